use super::*;

/// A synthetic calendar: Mon–Fri 09:00–12:00 and 13:00–18:00; 2026-10-01..07 off;
/// Sunday 2026-09-27 and Saturday 2026-10-10 worked instead (09:00–17:00).
const CAL: &str = r#"
name = "test"
utc_offset = "+08:00"
workdays = ["mon", "tue", "wed", "thu", "fri"]
holidays = ["2026-10-01..2026-10-07", "2026-12-25"]
makeup_workdays = ["2026-09-27", "2026-10-10"]
[hours]
mon = ["09:00-12:00", "13:00-18:00"]
tue = ["09:00-12:00", "13:00-18:00"]
wed = ["09:00-12:00", "13:00-18:00"]
thu = ["09:00-12:00", "13:00-18:00"]
fri = ["09:00-12:00", "13:00-18:00"]
makeup = ["09:00-17:00"]
"#;

fn cal() -> Calendar {
    Calendar::parse(CAL).unwrap()
}

/// Local time (+08:00) to UTC.
fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("{s}+08:00")).unwrap().to_utc()
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[test]
fn working_days_follow_weekdays_holidays_and_make_up_days() {
    let c = cal();
    let check = |day: &str, want: bool| assert_eq!(c.is_working_day(d(day)), want, "{day}");
    check("2026-09-25", true); // Friday
    check("2026-09-26", false); // Saturday
    check("2026-09-27", true); // Sunday, worked instead of a holiday
    check("2026-10-01", false); // National Day
    check("2026-10-05", false); // Monday inside the holiday
    check("2026-10-07", false);
    check("2026-10-08", true);
    check("2026-10-10", true); // Saturday worked
    check("2026-10-11", false);
    check("2026-12-25", false); // single-day holiday on a Friday
    assert_eq!(c.hours_on(d("2026-10-10")).len(), 1, "make-up days use the make-up hours");
}

fn check_business(start: &str, hours: f64, want: &str) {
    let got = cal().add_business_time(t(start), Duration::from_secs_f64(hours * 3600.0)).unwrap();
    assert_eq!(got, t(want), "{start} + {hours} business hours");
}

#[test]
fn business_time_runs_only_in_business_hours() {
    check_business("2026-09-22T10:00:00", 1.0, "2026-09-22T11:00:00");
    // Across lunch.
    check_business("2026-09-22T11:30:00", 1.0, "2026-09-22T13:30:00");
    // Before opening: the clock starts at 09:00.
    check_business("2026-09-22T06:00:00", 0.5, "2026-09-22T09:30:00");
    // After closing: the clock starts next morning.
    check_business("2026-09-22T19:00:00", 2.0, "2026-09-23T11:00:00");
    // Exactly at closing, and a span that ends exactly at closing.
    check_business("2026-09-22T18:00:00", 1.0, "2026-09-23T10:00:00");
    check_business("2026-09-22T17:00:00", 1.0, "2026-09-22T18:00:00");
    // Over a weekend: Friday 17:00 + 2 h is Monday 10:00.
    check_business("2026-09-18T17:00:00", 2.0, "2026-09-21T10:00:00");
    // Into the worked Sunday (09:00-17:00).
    check_business("2026-09-25T17:00:00", 3.0, "2026-09-27T11:00:00");
    // Across the National Day holiday: 30 Sep 17:00 + 4 h is 8 Oct 12:00.
    check_business("2026-09-30T17:00:00", 4.0, "2026-10-08T12:00:00");
    // Zero is now, if now is within hours.
    check_business("2026-09-22T10:00:00", 0.0, "2026-09-22T10:00:00");
}

fn check_days(start: &str, n: u32, want: &str) {
    let got = cal().add_working_days(t(start), n).unwrap();
    assert_eq!(got, t(want), "{start} + {n} working days");
}

#[test]
fn working_days_end_at_close_of_business() {
    check_days("2026-09-22T10:00:00", 3, "2026-09-25T18:00:00");
    // Friday: Monday, Tuesday, Wednesday.
    check_days("2026-09-18T16:00:00", 3, "2026-09-23T18:00:00");
    // From Saturday the 26th: the worked Sunday counts, then Monday, Tuesday.
    check_days("2026-09-26T12:00:00", 3, "2026-09-29T18:00:00");
    // Across the holiday: 30 Sep + 3 = 8, 9 Oct and the worked Saturday 10 Oct (closing 17:00).
    check_days("2026-09-30T10:00:00", 3, "2026-10-10T17:00:00");
    // The day of the event does not count, even early in the morning.
    check_days("2026-09-22T00:10:00", 1, "2026-09-23T18:00:00");
}

#[test]
fn times_in_utc_are_read_in_the_calendar_s_offset() {
    // 2026-09-22T02:30Z is 10:30 in +08:00.
    let start = DateTime::parse_from_rfc3339("2026-09-22T02:30:00Z").unwrap().to_utc();
    assert!(cal().in_business_hours(start));
    assert!(!cal().in_business_hours(t("2026-09-22T12:30:00")));
    let got = cal().add_business_time(start, Duration::from_secs(3600)).unwrap();
    assert_eq!(got, t("2026-09-22T11:30:00"));
}

#[test]
fn mistakes_are_named() {
    let check = |text: &str, want: &str| {
        let e = Calendar::parse(text).unwrap_err();
        assert!(e.message.contains(want), "{}: {}", want, e.message);
    };
    let base = "name = \"x\"\nworkdays = [\"mon\"]\n[hours]\nmon = [\"09:00-17:00\"]\n";
    check(&base.replace("\"mon\"]\n[hours]", "\"monday\"]\n[hours]"), "is not a weekday");
    check(&base.replace("09:00-17:00", "9-5"), "is not a span of hours");
    check(&base.replace("09:00-17:00", "17:00-09:00"), "ends before it starts");
    check("name = \"x\"\nworkdays = [\"tue\"]\n[hours]\nmon = [\"09:00-17:00\"]\n", "without business hours");
    check(&format!("holidays = [\"2026-13-01\"]\n{base}"), "is not a date");
    check(&format!("holidays = [\"2026-10-01\"]\nmakeup_workdays = [\"2026-10-01\"]\n{base}"), "both as a holiday");
    check(&format!("{base}tue = [\"09:00-12:00\", \"11:00-17:00\"]\n"), "overlaps");
    check(&format!("colour = 1\n{base}"), "unknown field `colour`");
}

#[test]
fn the_shipped_sample_calendar_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/calendars/cn-2026.toml");
    let c = Calendar::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    // Spring Festival 2026: 15–23 February off; Saturday 14 and Saturday 28 February worked.
    assert!(!c.is_working_day(d("2026-02-17")));
    assert!(c.is_working_day(d("2026-02-14")));
    assert!(c.is_working_day(d("2026-02-28")));
    // National Day: 1–7 October off; Sunday 20 September and Saturday 10 October worked.
    assert!(!c.is_working_day(d("2026-10-06")));
    assert!(c.is_working_day(d("2026-09-20")));
    assert!(c.is_working_day(d("2026-10-10")));
}

#[test]
fn years_merge_into_one_calendar_and_a_clock_past_them_finds_the_gap() {
    let next = CAL.replace("name = \"test\"", "name = \"test-2027\"").replace(
        r#"holidays = ["2026-10-01..2026-10-07", "2026-12-25"]
makeup_workdays = ["2026-09-27", "2026-10-10"]"#,
        r#"holidays = ["2027-01-01"]"#,
    );
    let c = cal().merge(Calendar::parse(&next).unwrap()).unwrap();
    assert!(c.covers(d("2026-06-01")) && c.covers(d("2027-06-01")) && !c.covers(d("2028-01-01")));
    assert_eq!(c.last_covered_day(), Some(d("2027-12-31")));
    assert!(!c.is_working_day(d("2027-01-01")), "the 2027 file's holiday");
    assert_eq!(c.gap(t("2027-12-30T10:00:00"), t("2027-12-31T17:00:00")), None);
    assert_eq!(c.gap(t("2027-12-30T10:00:00"), t("2028-01-04T17:00:00")), Some(d("2028-01-01")));
    // 2026 alone: three working days from 2026-12-30 run into 2027, which it does not know.
    let alone = cal();
    let by = alone.add_working_days(t("2026-12-30T10:00:00"), 3).unwrap();
    assert_eq!(alone.gap(t("2026-12-30T10:00:00"), by), Some(d("2027-01-01")));
    // The same year twice, or a different week, does not merge.
    assert!(cal().merge(cal()).unwrap_err().contains("both settle 2026"));
    let other_week = next.replace(r#"fri = ["09:00-12:00", "13:00-18:00"]"#, r#"fri = ["09:00-12:00"]"#);
    assert!(cal().merge(Calendar::parse(&other_week).unwrap()).is_err());
}

#[test]
fn a_file_settles_one_year() {
    let mixed = CAL.replace(r#""2026-12-25"]"#, r#""2027-01-01"]"#);
    assert!(Calendar::parse(&mixed).unwrap_err().message.contains("which year"), "no year and two mentioned");
    let far = CAL.replace("name = \"test\"", "name = \"test\"\nyear = 2028");
    assert!(Calendar::parse(&far).unwrap_err().message.contains("keep one year a file"));
    // A holiday across New Year, as the official 2023 schedule had it, belongs to the year it says.
    let across = CAL
        .replace("name = \"test\"", "name = \"test\"\nyear = 2027")
        .replace(r#"holidays = ["2026-10-01..2026-10-07", "2026-12-25"]"#, r#"holidays = ["2026-12-31..2027-01-02"]"#);
    let c = Calendar::parse(&across).unwrap();
    assert!(c.covers(d("2027-06-01")) && !c.covers(d("2026-06-01")));
    assert!(!c.is_working_day(d("2026-12-31")));
}
