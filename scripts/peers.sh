#!/usr/bin/env bash
# Installs (from Debian's packages and PyPI, if missing) and starts the real
# peers the tests talk to, on loopback: Request Tracker 5 and Redmine 5, an
# SMTP sink's Python (aiosmtpd), pymodbus, mbpoll, socat, VictoriaMetrics,
# promtool, and the fonts and poppler-utils of the PDF report test. Then prints the
# environment the tests read:
#
#   eval "$(scripts/peers.sh)"
#
#   AFTERCARE_TEST_RT_URL       http://127.0.0.1:18080/rt
#   AFTERCARE_TEST_RT_TOKEN     an RT auth token of root
#   AFTERCARE_TEST_REDMINE_URL  http://127.0.0.1:13000
#   AFTERCARE_TEST_REDMINE_KEY  the REST API key of admin
#   AFTERCARE_TEST_SMTP_PYTHON  a Python with aiosmtpd, for the email tests
#   AFTERCARE_TEST_VM_URL       VictoriaMetrics, which takes the InfluxDB v2 write API
#   AFTERCARE_TEST_CHROMIUM     Debian's Chromium, for the console's browser tests
#
# Idempotent: a server already answering is left running. Needs root (apt,
# runuser). State lives under $AFTERCARE_HELPDESK_DIR (default
# target/helpdesks); logs go there too. Everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DIR=${AFTERCARE_HELPDESK_DIR:-$PWD/target/helpdesks}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# RT and Redmine run as www-data, which must reach what they read here.
if ! runuser -u www-data -- test -x "$DIR" 2>/dev/null; then
  DIR=/tmp/aftercare-helpdesks
  mkdir -p "$DIR"
fi
RT_PORT=18080
REDMINE_PORT=13000
log() { echo "peers: $*" >&2; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_http() { # url seconds
  for _ in $(seq $(($2 * 5))); do
    curl -fsS --max-time 10 -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  log "no answer from $1 after $2 s"; return 1
}

apt_updated=
apt_install() { # quiet unless it fails
  if [ -z "$apt_updated" ]; then apt-get update -qq >"$DIR/apt.log" 2>&1 || { cat "$DIR/apt.log" >&2; return 1; }; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$DIR/apt.log" 2>&1 \
    || { tail -n 40 "$DIR/apt.log" >&2; return 1; }
}

# ---- Modbus peers: an independent server, a client, a serial line -----------
if ! /usr/bin/python3 -c 'import pymodbus' 2>/dev/null || ! command -v mbpoll >/dev/null || ! command -v socat >/dev/null; then
  log "installing pymodbus, mbpoll and socat"
  apt_install python3-pymodbus python3-serial python3-serial-asyncio mbpoll socat
fi

# ---- promtool, which checks what /metrics serves ------------------------------
if ! command -v promtool >/dev/null; then
  log "installing prometheus (for promtool)"
  apt_install prometheus
fi

# ---- PDF reports: fonts with Chinese glyphs, and poppler to read the PDFs back ----
if ! command -v pdftotext >/dev/null || [ ! -e /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] \
  || [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  log "installing fonts and poppler-utils"
  apt_install fonts-droid-fallback fonts-dejavu-core poppler-utils
fi

# ---- A real browser for the console's tests: Debian's Chromium, CJK fonts, and ----
# ---- Playwright's client library (never its own browser download) -------------------
if ! command -v chromium >/dev/null || [ ! -d /usr/share/fonts/opentype/noto ]; then
  log "installing chromium and CJK fonts"
  apt_install chromium fonts-noto-cjk
fi
# ---- poppler: the report tests look at each PDF page as a picture and as text ----------
if ! command -v pdftoppm >/dev/null || ! command -v pdftotext >/dev/null; then
  log "installing poppler-utils"
  apt_install poppler-utils
fi
if [ ! -d "$REPO/tests/browser/node_modules/playwright-core" ] || [ ! -d "$REPO/tests/browser/node_modules/axe-core" ]; then
  log "installing playwright-core and axe-core"
  (cd "$REPO/tests/browser" && npm ci --no-audit --no-fund --silent) >&2
fi

# ---- VictoriaMetrics (the InfluxDB v2 write API) ------------------------------
VM_PORT=18428
if ! command -v victoria-metrics >/dev/null; then
  log "installing VictoriaMetrics"
  apt_install victoria-metrics
fi
if ! up $VM_PORT; then
  log "starting VictoriaMetrics on 127.0.0.1:$VM_PORT"
  mkdir -p "$DIR/vm"
  # A long retention: the simulator's clock may be months away from today's. Deduplication
  # stores a point resent after a lost answer once, as InfluxDB does (same series, same time).
  setsid victoria-metrics -storageDataPath="$DIR/vm" -httpListenAddr=127.0.0.1:$VM_PORT \
    -retentionPeriod=100y -search.latencyOffset=0s -search.disableCache -dedup.minScrapeInterval=1ms \
    >"$DIR/vm.log" 2>&1 </dev/null &
  wait_http "http://127.0.0.1:$VM_PORT/health" 30
fi

# ---- Request Tracker 5 -------------------------------------------------------
if ! dpkg -s rt5-standalone >/dev/null 2>&1; then
  log "installing Request Tracker 5"
  debconf-set-selections <<'EOF'
request-tracker5 request-tracker5/rtname string rt.example.test
request-tracker5 request-tracker5/organization string example.test
request-tracker5 request-tracker5/correspondaddress string rt@example.test
request-tracker5 request-tracker5/commentaddress string rt-comment@example.test
request-tracker5 request-tracker5/webbaseurl string http://127.0.0.1:18080
request-tracker5 request-tracker5/webpath string /rt
request-tracker5 request-tracker5/handle-siteconfig-permissions boolean true
request-tracker5 request-tracker5/install-cronjobs boolean false
request-tracker5 request-tracker5/initial-root-password password Secret123!
request-tracker5 request-tracker5/dbconfig-install boolean true
request-tracker5 request-tracker5/database-type select sqlite3
request-tracker5 request-tracker5/db/basepath string /var/lib/dbconfig-common/sqlite3/request-tracker5
request-tracker5 request-tracker5/db/dbname string rtdb
EOF
  apt_install request-tracker5 rt5-db-sqlite rt5-standalone
  # RT cannot read a site config it may not open, and then silently ignores it.
  chgrp www-data /etc/request-tracker5/RT_SiteConfig.pm
  chmod 640 /etc/request-tracker5/RT_SiteConfig.pm
fi
if ! up $RT_PORT; then
  log "starting Request Tracker on 127.0.0.1:$RT_PORT"
  # Ten workers (the default) take 2.3 GB; four serve the tests that run side by side.
  setsid runuser -u www-data -- /usr/share/request-tracker5/libexec/rt-server \
    --host 127.0.0.1 --port $RT_PORT --webpath /rt --max-workers 4 \
    >"$DIR/rt.log" 2>&1 </dev/null &
  wait_http "http://127.0.0.1:$RT_PORT/rt/" 120
fi
# The reference field aftercare fills, and an API token for root.
if [ ! -s "$DIR/rt.token" ]; then
  cat >"$DIR/rt-setup.pl" <<'EOF'
use strict; use warnings;
use lib '/usr/share/request-tracker5/lib';
use RT; RT::LoadConfig(); RT::Init();
my $cf = RT::CustomField->new(RT->SystemUser);
$cf->LoadByName(Name => 'aftercare', LookupType => 'RT::Queue-RT::Ticket');
unless ($cf->id) {
  my ($ok, $msg) = $cf->Create(Name => 'aftercare', Type => 'FreeformSingle',
    LookupType => 'RT::Queue-RT::Ticket', Description => 'aftercare ticket reference');
  die "custom field: $msg" unless $ok;
  ($ok, $msg) = $cf->AddToObject(RT::Queue->new(RT->SystemUser)); # global: every queue
  die "apply custom field: $msg" unless $ok;
}
my $root = RT::User->new(RT->SystemUser); $root->Load('root');
my $token = RT::AuthToken->new(RT->SystemUser);
my ($ok, $msg, $auth) = $token->Create(Owner => $root->id, Description => 'aftercare tests');
die "token: $msg" unless $ok;
print "$auth\n";
EOF
  chown www-data "$DIR/rt-setup.pl"
  runuser -u www-data -- perl "$DIR/rt-setup.pl" >"$DIR/rt.token.new" 2>"$DIR/rt-setup.log" \
    || { cat "$DIR/rt-setup.log" >&2; exit 1; }
  tail -n1 "$DIR/rt.token.new" >"$DIR/rt.token"
fi

# ---- Redmine 5 ---------------------------------------------------------------
if ! dpkg -s redmine-sqlite >/dev/null 2>&1; then
  log "installing Redmine 5"
  printf '%s\n' 'redmine redmine/current-instances string default' \
    'redmine redmine/instances/default/dbconfig-install boolean true' \
    'redmine redmine/instances/default/database-type select sqlite3' \
    'redmine redmine/instances/default/default-language select en' \
    'redmine redmine/instances/default/db/dbname string redmine_default' | debconf-set-selections
  # Without this Bundler version the package's configure step fails (Bundler::GemNotFound).
  BUNDLER_VERSION=2.3.15 apt_install redmine redmine-sqlite ruby-webrick
fi
RM="$DIR/redmine"
mkdir -p "$RM"
# Redmine's bundle has no web server: a private Gemfile adds webrick.
printf 'eval_gemfile "/usr/share/redmine/Gemfile"\ngem "webrick"\n' >"$RM/Gemfile"
chown -R www-data "$RM"
R() { (cd /usr/share/redmine && runuser -u www-data -- env BUNDLER_VERSION=2.3.15 BUNDLE_GEMFILE="$RM/Gemfile" \
  REDMINE_INSTANCE=default RAILS_ENV=production "$@"); }
if [ ! -s "$RM/Gemfile.lock" ]; then
  R bundle install --local >"$DIR/bundle.log" 2>&1 || { cat "$DIR/bundle.log" >&2; exit 1; }
fi
if [ ! -s "$DIR/redmine.key" ]; then
  log "enabling Redmine's REST API"
  R bundle exec rails runner '
    Setting.rest_api_enabled = "1"
    u = User.find_by_login("admin")
    u.password = u.password_confirmation = "Secret123!"
    u.must_change_passwd = false
    u.save!
    puts u.api_key' 2>"$DIR/redmine-setup.log" | tail -n1 >"$DIR/redmine.key.new" \
    || { cat "$DIR/redmine-setup.log" >&2; exit 1; }
  mv "$DIR/redmine.key.new" "$DIR/redmine.key"
fi
REDMINE_KEY=$(cat "$DIR/redmine.key")
if ! up $REDMINE_PORT; then
  log "starting Redmine on 127.0.0.1:$REDMINE_PORT"
  # The whole subshell is redirected and backgrounded: nothing that runs on
  # may hold this script's stdout, which `eval "$(scripts/peers.sh)"` reads
  # to its end.
  (cd /usr/share/redmine && exec setsid runuser -u www-data -- env BUNDLER_VERSION=2.3.15 BUNDLE_GEMFILE="$RM/Gemfile" \
    REDMINE_INSTANCE=default RAILS_ENV=production bundle exec rackup -s webrick -o 127.0.0.1 -p $REDMINE_PORT \
    -E production -P "$RM/redmine.pid" config.ru) >"$DIR/redmine.log" 2>&1 </dev/null &
  wait_http "http://127.0.0.1:$REDMINE_PORT/" 120
fi
# A fresh Redmine has no project; the tests file into `aftercare-test`.
if ! curl -fsS --max-time 30 -o /dev/null -H "X-Redmine-API-Key: $REDMINE_KEY" 2>/dev/null \
  "http://127.0.0.1:$REDMINE_PORT/projects/aftercare-test.json"; then
  curl -fsS --max-time 60 -o /dev/null -H "X-Redmine-API-Key: $REDMINE_KEY" -H 'Content-Type: application/json' \
    -X POST "http://127.0.0.1:$REDMINE_PORT/projects.json" \
    -d '{"project":{"name":"aftercare test","identifier":"aftercare-test","is_public":false,"enabled_module_names":["issue_tracking"]}}'
fi

# ---- An SMTP sink (aiosmtpd) for the email tests, and schemathesis for the API's ----
# ---- description (tests/it/openapi.rs) -----------------------------------------------
if [ ! -x "$DIR/venv/bin/python" ] || ! "$DIR/venv/bin/python" -c 'import aiosmtpd' 2>/dev/null \
  || [ ! -x "$DIR/venv/bin/schemathesis" ]; then
  [ -x "$DIR/venv/bin/python" ] || python3 -m venv "$DIR/venv" >&2
  "$DIR/venv/bin/pip" install -q aiosmtpd 'schemathesis>=4.3,<5' >&2
fi

echo "export AFTERCARE_TEST_CHROMIUM=$(command -v chromium)"
echo "export AFTERCARE_TEST_SMTP_PYTHON=$DIR/venv/bin/python"
echo "export AFTERCARE_TEST_SCHEMATHESIS=$DIR/venv/bin/schemathesis"
echo "export AFTERCARE_TEST_VM_URL=http://127.0.0.1:$VM_PORT"
echo "export AFTERCARE_TEST_RT_URL=http://127.0.0.1:$RT_PORT/rt"
echo "export AFTERCARE_TEST_RT_TOKEN=$(cat "$DIR/rt.token")"
echo "export AFTERCARE_TEST_REDMINE_URL=http://127.0.0.1:$REDMINE_PORT"
echo "export AFTERCARE_TEST_REDMINE_KEY=$REDMINE_KEY"
