#!/usr/bin/perl
# The demo of nginx-build/run (nginx-build/demo.conf), as README's "Two commands" describes
# it: `/` answers 200 from the healthy peer and 502 from the dead one with its cause in a
# header; `/api/` answers the dead peer's 502 with a fallback (JSON or HTML by Accept);
# `/checked/` never meets the dead peer once its health check failed; the status counts it
# all.   Run alone: prove -v t/demo.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer wait_state);

my $t = Triage::Harness->new;
my $dead = Triage::Backend::closed_port();

my $conf_file = "$FindBin::Bin/../nginx-build/demo.conf";
open my $fh, '<', $conf_file or die "$conf_file: $!";
my $conf = do { local $/; <$fh> };
close $fh;
# nginx-build/run's placeholders, in the harness's terms (its first lines, comments, name them)
$conf =~ s/^#.*\n//mg;
$conf =~ s/%%PORT%%/%%PORT_main%%/g;
$conf =~ s/%%HEALTHY_PORT%%/%%PORT_healthy%%/g;
$conf =~ s/^load_module %%MODULE%%;/%%LOAD_MODULE%%/m or die "no load_module line in $conf_file";
$conf =~ s{^\s*access_log /dev/stdout\b.*\n}{}m;
$t->start($conf, DEAD_PORT => $dead);

local $Triage::Checks::STATUS = '/__upstream_status';
my $healthy = '127.0.0.1:' . $t->port('healthy');
my $dead_peer = "127.0.0.1:$dead";

# --- /: one request per peer ---------------------------------------------------------------
my @r = map { $t->http('main', '/') } 1 .. 2;
my ($ok) = grep { $_->{status} == 200 } @r;
my ($bad) = grep { $_->{status} == 502 } @r;
ok($ok, '/: one of two requests answered 200');
is($ok && $ok->{body}, "hello from the healthy backend\n", '/: ... by the healthy backend');
ok($bad, '/: the other 502');
is($bad && $bad->{headers}{'x-triage-cause'}, 'connect_refused',
    '/: the 502 names its cause in X-Triage-Cause');
like($bad && $bad->{body}, qr{<center>nginx/[\d.]+</center>}, "/: with nginx's own page");

# --- /api/: the fallback ---------------------------------------------------------------------
my $j = $t->http('main', '/api/orders', headers => { Accept => 'application/json' });
is($j->{status}, 502, '/api/, JSON client: 502');
like($j->{headers}{'content-type'}, qr{^application/json}, '/api/, JSON client: a JSON body');
my $doc = eval { JSON::PP::decode_json($j->{body}) } || {};
is($doc->{cause}, 'connect_refused', '/api/, JSON client: cause');
is($doc->{error}, 'bad_gateway', '/api/, JSON client: error');
like($doc->{request_id} // '', qr/^[0-9a-f]{32}$/, '/api/, JSON client: request id');
unlike($j->{body}, qr/127\.0\.0\.1/, '/api/: no internal address (details off)');
is($j->{headers}{'cache-control'}, 'no-store', '/api/: Cache-Control: no-store');

my $h = $t->http('main', '/api/orders', headers => { Accept => 'text/html' });
is($h->{status}, 502, '/api/, browser: 502');
like($h->{headers}{'content-type'}, qr{^text/html; charset=utf-8}, '/api/, browser: HTML');
like($h->{body}, qr/temporarily unavailable/i, '/api/, browser: the friendly page');
unlike($h->{body}, qr{nginx/[\d.]+}, "/api/, browser: not nginx's own page");

# --- /checked/: the health check takes the dead peer out ------------------------------------
# default_down=true (UCM's default): no peer gets traffic before its first verdict
my $p = wait_state($t, 'checked', $dead_peer, 'unhealthy', 5);
ok($p, 'checked: the dead peer is unhealthy within 5 s');
is($p && $p->{health}{last_error}, 'connect_refused', 'checked: ... because it refused');
ok(wait_state($t, 'checked', $healthy, 'up', 5), 'checked: the healthy peer is up within 5 s');
my @st = map { $t->http('main', '/checked/')->{status} } 1 .. 6;
is_deeply(\@st, [(200) x 6], '/checked/: six requests, six 200s: none met the dead peer');

# --- the status counts it all -----------------------------------------------------------------
my $s = status_json($t);
is(peer($s, 'app', $dead_peer)->{failures}{by_cause}{connect_refused}, 1,
    'status: app counts the refused try of /');
is(peer($s, 'app', $healthy)->{requests}, 1, 'status: ... and the healthy peer served one');
my ($implicit) = grep { $_ =~ /\Q$dead\E/ } keys %{ $s->{upstreams} || {} };
ok($implicit, "status: /api/'s implicit upstream is listed");
is($implicit && peer($s, $implicit, $dead_peer)->{failures}{by_cause}{connect_refused}, 2,
    "status: ... with /api/'s two refused tries");
is(peer($s, 'checked', $dead_peer)->{requests}, 0,
    'status: no request was sent to the unhealthy peer of checked');

$t->stop;
done_testing;
