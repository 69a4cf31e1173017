#!/usr/bin/env bash
# The packages' round trip on this machine (root; Debian or Ubuntu): build both packages unless given,
# install the .deb, run the installed shipctl as the shipctl user, purge, and check what is left. Then
# inspect the .rpm. Used by .ci/run; by hand:
#     bash packaging/roundtrip.sh                  # build, then test
#     bash packaging/roundtrip.sh DEB RPM          # test packages built before
# It installs and purges the package "shipctl": do not run it where shipctl is installed for real.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "roundtrip: FAIL: $*" >&2; exit 1; }
step() { echo "roundtrip: $*" >&2; }

if [ "$#" -eq 2 ]; then
    deb=$1 rpmfile=$2
else
    out=$(python3 packaging/build.py) || fail "packaging/build.py exited $?"
    mapfile -t built <<<"$out"
    deb=${built[0]} rpmfile=${built[1]:-}
fi
[ -f "$deb" ] || fail "no .deb ($deb)"
[ -f "$rpmfile" ] || fail "no .rpm ($rpmfile)"
# The bundle's interpreter is the old-glibc build (packaging/oldglibc_python.py), so the packages install on
# every system with glibc 2.17 (RHEL 7) and later, as the README says; build.py's fallback to this machine's
# Python would not.
floor=$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
{ [ -n "$floor" ] && dpkg --compare-versions "$floor" le 2.17; } ||
    fail "the .deb needs glibc >= ${floor:-?}, more than 2.17 (did build.py fall back to its own Python?)"
step "the packages need glibc >= $floor"
# TLS to every receiver goes through the bundle's OpenSSL: the supported 3.x series, not 1.1.1 (no upstream
# fixes since 2023), which the old-glibc build carried before.
listing=$(dpkg-deb -c "$deb")
grep -q '/_internal/libssl\.so\.3$' <<<"$listing" || fail "the bundle carries no OpenSSL 3 (libssl.so.3)"
! grep -q 'libssl\.so\.1' <<<"$listing" || fail "the bundle carries OpenSSL 1.1"
step "the bundle carries OpenSSL 3"
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i)"
if dpkg-query -W -f '${Status}' shipctl 2>/dev/null | grep -q installed; then
    fail "shipctl is installed here already; this test would purge it"
fi

# Left over from a shipctl run by hand as root (its default state is /var/lib/shipctl): the purge below
# would delete it, so refuse, except on a CI machine, where nothing there is anyone's.
for path in /var/lib/shipctl /etc/shipctl /var/log/shipctl; do
    if [ -e "$path" ]; then
        [ "${CI:-}" = true ] || fail "$path exists (not from the package); move it away first"
        step "CI: removing the leftover $path"
        rm -rf "$path"
    fi
done

step "install $deb"
# A failed check must not leave the package installed (a second round trip would refuse to start).
trap 'if dpkg-query -W shipctl >/dev/null 2>&1; then dpkg --purge shipctl >/dev/null 2>&1 || true; fi' EXIT
dpkg -i "$deb" >/dev/null

# What the package put in place.
[ "$(readlink -f /usr/bin/shipctl)" = /usr/lib/shipctl/shipctl ] || fail "/usr/bin/shipctl is not the bundle"
getent passwd shipctl >/dev/null || fail "postinst made no shipctl user"
[ "$(stat -c '%U %a' /var/lib/shipctl)" = "shipctl 700" ] || fail "/var/lib/shipctl: $(stat -c '%U %a' /var/lib/shipctl)"
[ "$(stat -c '%U:%G %a' /etc/shipctl/shipctl.toml)" = "root:shipctl 640" ] || fail "config owner/mode"
grep -qx '/etc/shipctl/shipctl.toml' /var/lib/dpkg/info/shipctl.conffiles || fail "config is not a conffile"
verify=$(dpkg --verify shipctl) # checks every file against the package's md5sums
[ -z "$verify" ] || fail "dpkg --verify: $verify"
grep -q '^ExecStart=/usr/bin/shipctl ' /usr/lib/systemd/system/shipctl.service || fail "unit's ExecStart"
for f in /usr/share/man/man1/shipctl.1.gz /usr/share/bash-completion/completions/shipctl \
    /usr/share/zsh/vendor-completions/_shipctl /usr/share/fish/vendor_completions.d/shipctl.fish \
    /usr/share/doc/shipctl/examples/quickstart.toml /usr/lib/systemd/system/shipctl.timer; do
    [ -s "$f" ] || fail "missing $f"
done
zcat /usr/share/man/man1/shipctl.1.gz | grep -q '^\.SH "SHIPCTL STATE RECOVER"' || fail "man page lacks a subcommand"

# The installed program: no Python of the system's is used (the bundle brings its own).
version=$(/usr/bin/shipctl --version)
[ "$version" = "shipctl $(sed -n 's/^__version__ = "\(.*\)"/\1/p' shipctl/__init__.py)" ] || fail "--version said: $version"
runuser -u shipctl -- /usr/bin/shipctl check-config -c /etc/shipctl/shipctl.toml >/dev/null ||
    fail "check-config of the default config"
# One run as the timer does it; the default config's monitor writes to the file sink under /var/lib/shipctl.
runuser -u shipctl -- /usr/bin/shipctl run -c /etc/shipctl/shipctl.toml || fail "run exited $?"
[ "$(stat -c '%U %a' /var/lib/shipctl/state.db)" = "shipctl 600" ] || fail "state file owner/mode"
lines=$(wc -l </var/lib/shipctl/out.jsonl)
[ "$lines" -gt 0 ] || fail "the run delivered nothing to /var/lib/shipctl/out.jsonl"
grep -q '"source":"system"' /var/lib/shipctl/out.jsonl || fail "no system metrics in out.jsonl"
# A second run right after: monitors not due, nothing new; it must stay quiet (cron mails any output).
quiet=$(runuser -u shipctl -- /usr/bin/shipctl run -c /etc/shipctl/shipctl.toml 2>&1) || fail "second run"
[ -z "$quiet" ] || fail "a no-op run printed: $quiet"
runuser -u shipctl -- /usr/bin/shipctl status -c /etc/shipctl/shipctl.toml --json >/dev/null || fail "status"
# The installed bash completion, as bash calls it for "shipctl sta<TAB>", asks the installed binary (a
# system PATH, so that a venv's shipctl cannot answer instead).
comp=$(env PATH=/usr/sbin:/usr/bin:/sbin:/bin bash -c '. /usr/share/bash-completion/completions/shipctl; COMP_WORDS=(shipctl sta); COMP_CWORD=1
    _shipctl_completion shipctl; printf "%s\n" "${COMPREPLY[@]}"' | sort | tr '\n' ' ')
[ "$comp" = "state status " ] || fail "bash completion said: $comp"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /usr/lib/systemd/system/shipctl.service /usr/lib/systemd/system/shipctl.timer ||
        fail "systemd-analyze verify of the installed units"
fi
step "installed shipctl ran as the shipctl user: $lines events in out.jsonl"

# Everything shipctl imports lazily is in the bundle: a plugin run by the installed binary imports every
# shipctl module, common standard-library modules and the Panoptes and Scalyr shims, and says which extras are in.
probe=$(/usr/bin/shipctl run-monitor plugin --opt module="$PWD/packaging/probe_plugin.py" --print) ||
    fail "the import probe failed"
extras=$(python3 -c '
import json, sys
got = {}
for line in sys.stdin:
    a = json.loads(line)["attrs"]
    got[a["metric"]] = a["value"]
assert got["shipctl_modules"] > 50, got
print(" ".join(f"{k[6:]}={v}" for k, v in sorted(got.items()) if k.startswith("extra_")))' <<<"$probe") ||
    fail "probe output: $probe"
[ "$extras" = "kafka=0 mysql=1 otlp=1 prometheus=1 re2=1" ] || fail "extras in the bundle: $extras"
tmp=$(mktemp -d)
# re2 is in: a pattern that could backtrack for ever is accepted (it runs on RE2) ...
printf '%s\n' '[agent]' "state = \"$tmp/state.db\"" '[[logs]]' 'id = "a"' "path = \"$tmp/a.log\"" \
    "redaction_rules = [{ match_expression = '(a+)+\$', replacement = 'x' }]" \
    '[[sinks]]' 'type = "file"' "path = \"$tmp/out.jsonl\"" >"$tmp/re2.toml"
/usr/bin/shipctl check-config -c "$tmp/re2.toml" >/dev/null || fail "re2 pattern refused: RE2 not in the bundle?"
# ... and kafka, left out, is refused with the clear message, not a traceback.
printf '%s\n' '[agent]' "state = \"$tmp/state.db\"" '[[sinks]]' 'type = "kafka"' \
    'brokers = ["127.0.0.1:9092"]' 'topic = "logs"' >"$tmp/kafka.toml"
set +e
err=$(/usr/bin/shipctl check-config -c "$tmp/kafka.toml" 2>&1 >/dev/null)
code=$?
set -e
rm -rf "$tmp"
[ "$code" -eq 78 ] && grep -q "needs the confluent-kafka package" <<<"$err" || fail "kafka sink: exit $code: $err"
step "bundle: every shipctl module imports; extras $extras"

# Reinstall over it (what an upgrade does): the admin's config edit, its mode and the state are kept.
echo "# edited by the admin" >>/etc/shipctl/shipctl.toml
chmod 0600 /etc/shipctl/shipctl.toml
dpkg -i "$deb" >/dev/null
tail -n1 /etc/shipctl/shipctl.toml | grep -qx "# edited by the admin" || fail "reinstall replaced the edited config"
[ "$(stat -c %a /etc/shipctl/shipctl.toml)" = 600 ] || fail "reinstall reset the config's mode"
[ -s /var/lib/shipctl/state.db ] || fail "reinstall lost the state"
chmod 0640 /etc/shipctl/shipctl.toml

mapfile -t owned < <(dpkg-query -L shipctl)
mkdir -p /var/log/shipctl # what the unit's LogsDirectory= makes on its first start: purge removes it too
step "purge"
dpkg --purge shipctl >/dev/null
dpkg-query -W shipctl >/dev/null 2>&1 && fail "dpkg still knows shipctl after purge"
left=()
for path in "${owned[@]}"; do
    case "$path" in
    / | /. | /etc | /usr | /usr/bin | /usr/lib | /usr/share | /usr/share/* | /usr/lib/systemd | /usr/lib/systemd/system | /etc/logrotate.d)
        # Shared directories: only the package's own entries inside them matter.
        case "$path" in /usr/share/doc/shipctl* | /usr/share/*/shipctl* | /usr/share/*/_shipctl) ;; *) continue ;; esac ;;
    esac
    if [ -e "$path" ] || [ -L "$path" ]; then left+=("$path"); fi
done
for path in /var/lib/shipctl /etc/shipctl /usr/lib/shipctl /var/log/shipctl; do
    [ -e "$path" ] && left+=("$path")
done
[ "${#left[@]}" -eq 0 ] || fail "left after purge: ${left[*]}"
getent passwd shipctl >/dev/null || fail "purge removed the shipctl user (it should stay)"
step "purge left nothing of the package (the shipctl user stays, by design)"

step "inspect $rpmfile"
list=$(rpm -qpl "$rpmfile" 2>/dev/null)
for path in /usr/bin/shipctl /usr/lib/shipctl/shipctl /etc/shipctl/shipctl.toml /usr/lib/systemd/system/shipctl.service \
    /usr/lib/systemd/system/shipctl.timer /usr/share/man/man1/shipctl.1.gz /usr/share/zsh/site-functions/_shipctl \
    /usr/share/bash-completion/completions/shipctl /usr/share/fish/vendor_completions.d/shipctl.fish /var/lib/shipctl; do
    grep -qx "$path" <<<"$list" || fail "rpm lacks $path"
done
rpm -qp --configfiles "$rpmfile" 2>/dev/null | grep -qx /etc/shipctl/shipctl.toml || fail "rpm: config is not %config"
info=$(rpm -qpi "$rpmfile" 2>/dev/null)
grep -q '^Name *: shipctl' <<<"$info" || fail "rpm -qpi: $info"
rpm -qp --requires "$rpmfile" 2>/dev/null | grep -q '^libc.so.6(GLIBC_' || fail "rpm does not require its glibc floor"
rpm -qp --scripts "$rpmfile" 2>/dev/null | grep -q 'useradd --system' || fail "rpm %pre makes no user"
# The .rpm's payload, unpacked into a scratch root (no scripts, no system change), runs: rpmbuild's
# post-processing (stripping, build-id) must not have touched the bundle.
rroot=$(mktemp -d)
rpm --root "$rroot" --dbpath /rpmdb --nodeps --noscripts --notriggers -i "$rpmfile" 2>/dev/null || fail "rpm -i --root"
[ "$("$rroot/usr/bin/shipctl" --version)" = "$version" ] || fail "the .rpm's shipctl does not run"
"$rroot/usr/bin/shipctl" run-monitor plugin --opt module="$PWD/packaging/probe_plugin.py" --print >/dev/null ||
    fail "the .rpm's bundle lacks modules"
rm -rf "$rroot"
step "ok"
