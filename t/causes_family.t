#!/usr/bin/perl
# "111: Connection refused" on a loopback address with the backend running elsewhere: on
# the other IP family (a server told to listen on "localhost" binds the first address the name
# resolves to, ::1 on many systems: Node.js 17 and later) or on one other address only (as
# `gunicorn --bind` does). The module reads the kernel's table of listening sockets on the
# port (netlink sock_diag, never a connect to the backend) and says where the backend is: in
# $triage_hint, in the status page's peer hint (the detail kept in shared memory) and in the
# fallback's details.
# Real sockets: a backend on [::1] only, one on 127.0.0.1 only, one on 127.0.0.2 only, a port
# nothing listens on, and a backend that starts on [::1] while nginx runs (seen within a
# second: each worker reads the table at most once a second an address). Nothing on that port
# at all with nginx in a container (this machine may be one; Triage::Harness::in_container
# says): the hint adds that loopback is the container's own. Skipped where the machine has no
# ::1.
#   Run alone: prove -v t/causes_family.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use IO::Socket::IP;
use JSON::PP ();
use Triage::Harness qw(log_format_directive wait_until in_container);
use Triage::Backend;
use Triage::Checks qw(status_json peer no_crash);
use Triage::Verdict qw(access_verdict);

BEGIN {
    my $probe = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1);
    plan skip_all => "no IPv6 loopback on this machine ($@)" unless $probe;
}

my @F = qw(request_uri status triage_cause triage_errno triage_phase triage_peer triage_hint);
my $t = Triage::Harness->new;
my $on6 = $t->backend('ok', host => '::1', body => "from ::1\n");
my $on4 = $t->backend('ok', body => "from 127.0.0.1\n");
# bound to one address only (as gunicorn --bind does): another loopback address here
my $on2 = $t->backend('ok', host => '127.0.0.2', body => "from 127.0.0.2\n");
my ($p6, $p4, $p2) = ($on6->port, $on4->port, $on2->port);
my $closed = Triage::Backend::closed_port();
my $later = Triage::Backend::closed_port();

$t->start(<<"CONF", LOG_FORMAT => log_format_directive('triage', @F));
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
    upstream app  { server 127.0.0.1:$p6 max_fails=0; }
    upstream late { server 127.0.0.1:$later max_fails=0; }
    # what "localhost" in a server line or proxy_pass makes: both loopback addresses
    upstream both { server 127.0.0.1:$p6; server [::1]:$p6; }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /v4/      { proxy_pass http://app; }
        location /v6/      { proxy_pass http://[::1]:$p6; }
        location /to6/     { fastcgi_pass [::1]:$p4; }
        location /nowhere/ { proxy_pass http://127.0.0.1:$closed; }
        location /bound/   { proxy_pass http://127.0.0.1:$p2; }
        location /bound2/  { proxy_pass http://127.0.0.2:$p2; }
        location /late/    { proxy_pass http://late; }
        location /both/    { proxy_pass http://both; }
        location /api/ {
            proxy_pass http://app;
            triage_fallback json;
            triage_fallback_details on;
        }
        location /status { triage_status; }
    }
}
CONF

my @workers = $t->worker_pids;
my $v6_hint = qr/^nothing listens on this IPv4 address, but the backend listens on the same port on IPv6 \(\[::1\]\) only: .*Node\.js 17.*connect to \[::1\] at that port, or make the backend listen on 127\.0\.0\.1/;
my $plain_hint = qr/^nothing listens at that address: is the backend running/;
# in a container (this machine may be one), loopback is the container's own: the hint says so
my $container = qr/; nginx runs in a container, where 127\.0\.0\.1 and ::1 are the container's own loopback: a backend on the host or in another container is not there; connect to another container by its service name .*host\.docker\.internal/;
my $in_container = in_container();
sub container_part {
    my ($uri) = @_;
    my $rec = $t->find_access('access.log', \@F, request_uri => $uri) or return fail("$uri: logged");
    if ($in_container) {
        like($rec->{triage_hint}, $container, "$uri: nginx runs in a container: the hint says loopback is the container's");
    } else {
        unlike($rec->{triage_hint}, qr/container/, "$uri: no container here: the hint says nothing of one");
    }
}

# --- nginx on 127.0.0.1, the backend on [::1] only
{
    my $r = $t->http('main', '/v4/a');
    is($r->{status}, 502, '/v4/a: 502 (127.0.0.1, the backend on [::1])');
    access_verdict($t, \@F, '/v4/a', cause => 'connect_refused', errno => 111,
        phase => 'connect', peer => "127.0.0.1:$p6", hint => $v6_hint,
        err => qr/\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream/);
    # the backend is there: the same port on [::1] answers
    $r = $t->http('main', '/v6/a');
    is($r->{status}, 200, '/v6/a: 200 through [::1]');
    is($r->{body}, "from ::1\n", '/v6/a: the [::1] backend answered');
    is($on6->count, 1, 'the [::1] backend got that request only (it was never connected to for the look)');

    # the status page: the peer's hint from the failure's detail, kept in shared memory
    my $p = peer(status_json($t), 'app', "127.0.0.1:$p6");
    ok($p, 'status: the peer is listed') or diag(explain(status_json($t)));
    like($p->{hint} // '', $v6_hint, 'status: the peer hint says the backend is on [::1]');
    is($p->{last_failure}{cause}, 'connect_refused', 'status: last failure connect_refused');

    # the fallback's details carry the same hint
    $r = $t->http('main', '/api/x');
    is($r->{status}, 502, '/api/x: 502');
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    is($j->{cause}, 'connect_refused', '/api/x: fallback cause connect_refused');
    like($j->{hint} // '', $v6_hint, '/api/x: fallback hint says the backend is on [::1]');
}

# --- "localhost" resolving to both: the client gets its 200 from [::1] after a refused try
# on 127.0.0.1 every fail_timeout; the status page says why that peer fails
{
    # two requests: round robin tries each server first once
    for my $i (1, 2) {
        my $r = $t->http('main', "/both/$i");
        is($r->{status}, 200, "/both/$i: 200");
        is($r->{body}, "from ::1\n", "/both/$i: answered by [::1]");
    }
    my $j = status_json($t);
    my $p = peer($j, 'both', "127.0.0.1:$p6");
    is($p && $p->{last_failure}{cause}, 'connect_refused', 'status: 127.0.0.1 refused')
        or diag(explain($j->{upstreams}{both}));
    like($p && $p->{hint} // '', $v6_hint, 'status: its hint says the backend is on [::1]');
    is(peer($j, 'both', "[::1]:$p6")->{last_failure}, undef, 'status: [::1] has not failed');
}

# --- nginx on [::1], the backend on 127.0.0.1 only (fastcgi_pass, php-fpm's usual listen)
{
    my $r = $t->http('main', '/to6/a');
    is($r->{status}, 502, '/to6/a: 502 ([::1], the backend on 127.0.0.1)');
    access_verdict($t, \@F, '/to6/a', cause => 'connect_refused', errno => 111,
        phase => 'connect', peer => "[::1]:$p4",
        hint => qr/^nothing listens on \[::1\], but the backend listens on the same port on IPv4 \(127\.0\.0\.1 or 0\.0\.0\.0\) only: connect to 127\.0\.0\.1 at that port/,
        err => qr/\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream/);
    is($on4->count, 0, 'the 127.0.0.1 backend got no connection from the look');
}

# --- the backend bound to another address only (an interface's, here 127.0.0.2)
{
    my $r = $t->http('main', '/bound/a');
    is($r->{status}, 502, '/bound/a: 502 (127.0.0.1, the backend on 127.0.0.2 only)');
    access_verdict($t, \@F, '/bound/a', cause => 'connect_refused', errno => 111,
        phase => 'connect', peer => "127.0.0.1:$p2",
        hint => qr/^nothing listens on this loopback address, but the backend listens on the same port on another address of this host only \(ss -ltn 'sport = :PORT' names it\): .*connect to that address, or make the backend listen on 127\.0\.0\.1 \(or 0\.0\.0\.0\)/,
        err => qr/\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream/);
    $r = $t->http('main', '/bound2/a');
    is($r->{status}, 200, '/bound2/a: 200 through 127.0.0.2');
    is($on2->count, 1, 'the 127.0.0.2 backend got that request only');
}

# plain_refusal($uri, $port): nothing listens on that port at all: 502, the plain hint (and in
# a container, the container's part)
sub plain_refusal {
    my ($uri, $port) = @_;
    my $r = $t->http('main', $uri);
    is($r->{status}, 502, "$uri: 502");
    access_verdict($t, \@F, $uri, cause => 'connect_refused', errno => 111,
        phase => 'connect', peer => "127.0.0.1:$port", hint => $plain_hint,
        err => qr/\[error\] .*connect\(\) failed \(111: Connection refused\)/);
    container_part($uri);
}

# --- nothing on that port: the plain hint
plain_refusal('/nowhere/a', $closed);

# --- the backend starts on [::1] while nginx runs: seen within a second or so
{
    plain_refusal('/late/0', $later);
    my $started = $t->backend('ok', host => '::1', port => $later);
    my $n = 0;
    # a request every 20 ms or so, for at most 5 s, until one gets the new hint
    my $seen = wait_until(sub {
        $n++;
        $t->http('main', "/late/$n");
        my $rec = $t->find_access('access.log', \@F, request_uri => "/late/$n");
        $rec && $rec->{triage_hint} =~ $v6_hint ? $n : undef;
    }, 5);
    ok($seen, "a backend started on [::1] is named in the hint ($n requests later)");
    my $first = $t->find_access('access.log', \@F, request_uri => '/late/1');
    is($first->{triage_cause}, 'connect_refused', '/late/1: still connect_refused (the port is not served on 127.0.0.1)');
    $started->stop;
}

no_crash($t, \@workers);
$t->stop;

done_testing;
