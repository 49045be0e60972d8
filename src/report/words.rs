//! The words people read for the states and kinds of things, in English and Chinese: one
//! place for the console's pages and the reports.

use super::Lang;
use crate::tickets::State;
use crate::tickets::intake::{Category, Channel};

/// A ticket state as people say it.
pub fn state(lang: Lang, s: State) -> &'static str {
    match (lang, s) {
        (Lang::En, State::Open) => "Open",
        (Lang::En, State::Acknowledged) => "Acknowledged",
        (Lang::En, State::Dispatched) => "Dispatched",
        (Lang::En, State::OnSite) => "On site",
        (Lang::En, State::AtFactory) => "At the factory",
        (Lang::En, State::Resolved) => "Resolved",
        (Lang::En, State::Closed) => "Closed",
        (Lang::En, State::Cancelled) => "Cancelled",
        (Lang::Zh, State::Open) => "待响应",
        (Lang::Zh, State::Acknowledged) => "已响应",
        (Lang::Zh, State::Dispatched) => "已派工",
        (Lang::Zh, State::OnSite) => "已到场",
        (Lang::Zh, State::AtFactory) => "返厂维修中",
        (Lang::Zh, State::Resolved) => "已修复",
        (Lang::Zh, State::Closed) => "已关闭",
        (Lang::Zh, State::Cancelled) => "已取消",
    }
}

/// Every clock's name, in the order of `tickets::sla::CLOCKS`: English, then Chinese.
pub const CLOCKS_EN: [&str; 6] = ["Acknowledge", "On site", "Resolve", "Phone fix", "On-site fix", "Factory repair"];
pub const CLOCKS_ZH: [&str; 6] = ["响应", "到场", "修复", "电话解决", "现场修复", "返厂维修"];

/// What a stage clock's deadline is for, as a label: "Fixed by phone by".
pub fn stage(lang: Lang, c: crate::tickets::clocks::ClockName) -> &'static str {
    use crate::tickets::clocks::ClockName as C;
    match (lang, c) {
        (Lang::En, C::RemoteFix) => "Fixed by phone by",
        (Lang::En, C::OnSiteFix) => "Fixed on site by",
        (Lang::En, C::Factory) => "Back from the factory by",
        (Lang::En, C::Acknowledge) => "Acknowledge by",
        (Lang::En, C::OnSite) => "On site by",
        (Lang::En, C::Resolve) => "Resolve by",
        (Lang::Zh, C::RemoteFix) => "电话解决时限",
        (Lang::Zh, C::OnSiteFix) => "现场修复时限",
        (Lang::Zh, C::Factory) => "返厂维修时限",
        (Lang::Zh, C::Acknowledge) => "响应时限",
        (Lang::Zh, C::OnSite) => "到场时限",
        (Lang::Zh, C::Resolve) => "修复时限",
    }
}

pub fn category(lang: Lang, c: Category) -> &'static str {
    match (lang, c) {
        (Lang::En, Category::Fault) => "Fault",
        (Lang::En, Category::Request) => "Request",
        (Lang::En, Category::Question) => "Question",
        (Lang::En, Category::Complaint) => "Complaint",
        (Lang::Zh, Category::Fault) => "故障",
        (Lang::Zh, Category::Request) => "服务请求",
        (Lang::Zh, Category::Question) => "咨询",
        (Lang::Zh, Category::Complaint) => "投诉",
    }
}

pub fn channel(lang: Lang, c: Channel) -> &'static str {
    match (lang, c) {
        (Lang::En, Channel::Sensor) => "Sensor",
        (Lang::En, Channel::Phone) => "Phone",
        (Lang::En, Channel::Web) => "Web",
        (Lang::En, Channel::Email) => "Email",
        (Lang::En, Channel::Visit) => "Visit",
        (Lang::En, Channel::Helpdesk) => "Helpdesk",
        (Lang::Zh, Channel::Sensor) => "设备监测",
        (Lang::Zh, Channel::Phone) => "电话",
        (Lang::Zh, Channel::Web) => "网页",
        (Lang::Zh, Channel::Email) => "邮件",
        (Lang::Zh, Channel::Visit) => "上门",
        (Lang::Zh, Channel::Helpdesk) => "服务台",
    }
}

/// A visit's state as people say it.
pub fn visit_state(lang: Lang, s: crate::domain::VisitState) -> &'static str {
    use crate::domain::VisitState as V;
    match (lang, s) {
        (Lang::En, V::Open) => "To do",
        (Lang::En, V::InProgress) => "In progress",
        (Lang::En, V::Done) => "Done",
        (Lang::En, V::Missed) => "Missed",
        (Lang::Zh, V::Open) => "待执行",
        (Lang::Zh, V::InProgress) => "进行中",
        (Lang::Zh, V::Done) => "已完成",
        (Lang::Zh, V::Missed) => "已逾期",
    }
}

/// A visit's kind as people say it.
pub fn visit_kind(lang: Lang, k: crate::domain::VisitKind) -> &'static str {
    use crate::domain::VisitKind as K;
    match (lang, k) {
        (Lang::En, K::Patrol) => "Patrol",
        (Lang::En, K::Inspection) => "Inspection",
        (Lang::En, K::Maintenance) => "Maintenance",
        (Lang::En, K::FollowUp) => "Follow-up call",
        (Lang::Zh, K::Patrol) => "巡检",
        (Lang::Zh, K::Inspection) => "检测",
        (Lang::Zh, K::Maintenance) => "保养",
        (Lang::Zh, K::FollowUp) => "回访",
    }
}

/// A complaint's grade as people say it.
pub fn grade(lang: Lang, g: crate::tickets::intake::Grade) -> &'static str {
    use crate::tickets::intake::Grade as G;
    match (lang, g) {
        (Lang::En, G::General) => "general",
        (Lang::En, G::Major) => "major",
        (Lang::Zh, G::General) => "一般",
        (Lang::Zh, G::Major) => "重大",
    }
}
