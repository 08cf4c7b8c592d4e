#!/usr/bin/perl
# Two network faults that loopback alone does not make, made for real in a private network
# namespace (unshare -n: its own loopback, routes and sysctls; the machine's stay untouched),
# still on 127.0.0.0/8:
# - no route to the backend: an "unreachable" route for 127.0.0.5 gives connect()
#   "113: No route to host" (host_unreachable);
# - a connect the kernel forbids: a "prohibit" route for 127.0.0.6 gives "13: Permission
#   denied" on a TCP port, as SELinux does (permission_denied);
# - ephemeral ports exhausted: four local ports (ip_local_port_range 40000 40003), no reuse
#   of TIME-WAIT ports (tcp_tw_reuse 0), and a backend that nginx closes first, each try
#   leaving a port in TIME-WAIT: a few requests in, connect() fails "99: Cannot assign
#   requested address" (address_unavailable), the 502 storm of a busy proxy without upstream
#   keepalive. The same backend through an upstream with `keepalive` keeps answering.
# Needs root and a kernel that lets it make a network namespace; else skipped, saying why.
#   Run alone: prove -v t/causes_netns.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

BEGIN {
    if (!$ENV{TRIAGE_IN_NETNS}) {
        plan skip_all => 'needs root (a private network namespace)' if $> != 0;
        plan skip_all => 'needs ip (iproute2; .ci/run installs it)'
            if system('command -v ip >/dev/null 2>&1') != 0;
        plan skip_all => 'unshare -n is not permitted on this machine'
            if system('unshare -n true >/dev/null 2>&1') != 0;
        $ENV{TRIAGE_IN_NETNS} = 1;
        exec 'unshare', '-n', $^X, $0, @ARGV;
        die "exec unshare: $!";
    }
}

use Triage::Harness qw(log_format_directive);
use Triage::Verdict qw(access_verdict);

sub sh { my ($cmd) = @_; system("$cmd 2>&1") == 0 or BAIL_OUT("in the namespace: $cmd failed") }
sub sysctl {
    my ($name, $value) = @_;
    my $f = "/proc/sys/net/ipv4/$name";
    open my $fh, '>', $f or BAIL_OUT("$f: $!");
    print $fh $value;
    close $fh or BAIL_OUT("$f: $!");
}

sh('ip link set lo up');
sh('ip route add unreachable 127.0.0.5/32 table local');
sh('ip route add prohibit 127.0.0.6/32 table local');

my @F = qw(request_uri status triage_cause triage_errno triage_phase triage_peer triage_hint);
my $t = Triage::Harness->new;
# answers with a length and keeps the connection open, reading no more: nginx, done
# reading, closes first, and its side of the connection (its local port) stays in TIME-WAIT
# for a minute
my $backend = $t->backend('custom', then => 'keep',
    respond => "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n")->addr;
# a backend that serves HTTP/1.1 keep-alive, for the upstream with keepalive
my $pool = $t->backend('ok');
my $pool_backend = $pool->addr;

$t->start(<<"CONF", LOG_FORMAT => log_format_directive('triage', @F));
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
    upstream short  { server $backend max_fails=0; }
    upstream pooled { server $pool_backend max_fails=0; keepalive 4; }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /unreachable { proxy_pass http://127.0.0.5:8080; }
        location /prohibited  { proxy_pass http://127.0.0.6:8080; }
        location /short/  { proxy_pass http://short; }
        location /pooled/ {
            proxy_pass http://pooled;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF

# --- no route to the backend
{
    my $r = $t->http('main', '/unreachable');
    is($r->{status}, 502, '/unreachable: 502');
    access_verdict($t, \@F, '/unreachable', cause => 'host_unreachable', errno => 113,
        phase => 'connect', peer => '127.0.0.5:8080',
        hint => qr/^no route to the backend host: check the address, the network and firewall rules/,
        err => qr/\[error\] .*connect\(\) to 127\.0\.0\.5:8080 failed \(113: No route to host\) while connecting to upstream/);
}

# --- a TCP connect the kernel forbids: "13: Permission denied", as SELinux makes it
# (httpd_can_network_connect off); here a "prohibit" route
{
    my $r = $t->http('main', '/prohibited');
    is($r->{status}, 502, '/prohibited: 502');
    access_verdict($t, \@F, '/prohibited', cause => 'permission_denied', errno => 13,
        phase => 'connect', peer => '127.0.0.6:8080',
        hint => qr/^the kernel refused nginx's connect to a TCP port \(13: Permission denied\): on SELinux systems .*setsebool -P httpd_can_network_connect 1/,
        err => qr/\[crit\] .*connect\(\) to 127\.0\.0\.6:8080 failed \(13: Permission denied\) while connecting to upstream/);
}

# --- ephemeral ports exhausted. One client connection for all that follows (opened while
# the whole range was there); nginx's connections to the backends take the four ports (a
# port can serve connections to different addresses at once: the pool's connection to its
# backend takes none of the other's).
my $c = $t->conn('main') or BAIL_OUT("connect to nginx: $!");
sysctl('ip_local_port_range', "40000 40003");
sysctl('tcp_tw_reuse', 0);
{
    my $r = $c->request('GET', '/pooled/1');
    is($r->{status}, 200, '/pooled/1: 200 (its connection is kept)');
    my (@ok, $failed);
    for my $i (1 .. 8) {
        $r = $c->request('GET', "/short/$i");
        if ($r->{status} == 502) { $failed = $i; last }
        push @ok, $r->{status};
    }
    ok($failed, "a request without keepalive got 502 once the ports ran out (after @{[scalar @ok]})")
        or diag(explain(\@ok));
    is_deeply(\@ok, [(200) x @ok], 'the requests before it: 200');
    cmp_ok(scalar @ok, '<=', 4, 'at most four requests got a port (four ports)');
    access_verdict($t, \@F, "/short/$failed", cause => 'address_unavailable', errno => 99,
        phase => 'connect', peer => $backend,
        hint => qr/^no local address\/port available to connect: too many TIME-WAIT sockets, enable upstream keepalive/,
        err => qr/\[crit\] .*connect\(\) to \Q$backend\E failed \(99: Cannot assign requested address\) while connecting to upstream/)
        if $failed;
    # upstream keepalive: the kept connection needs no new port
    my @pooled = map { $c->request('GET', "/pooled/again$_")->{status} } 1 .. 5;
    is_deeply(\@pooled, [(200) x 5], 'through the upstream with keepalive: 200 all the same');
    is($pool->connections, 1, 'over the one connection it kept');
}
$c->close;

$t->stop;
done_testing;
