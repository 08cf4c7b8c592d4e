#!/usr/bin/perl
# An unhealthy peer is never selected, by every built-in balancer (round robin, least_conn,
# hash, ip_hash, random, random two), with and without `zone`, with worker_processes 2:
# counted at the backend, zero requests reach it once it is marked down. Backup peers take
# over when the primaries are unhealthy; a configured `down` peer stays out even when its
# checks pass; fail_open=on sends traffic to every peer when all are unhealthy (502
# no_live_upstreams without it).
#   Run alone: prove -v t/checks_balancers.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer count_requests crash_lines);

my $t = Triage::Harness->new;
my %b = map { $_ => $t->backend('ok') } qw(A B C D E F G);
my %addr = map { $_ => $b{$_}->addr } keys %b;

my %balancers = (
    rr         => '',
    least_conn => 'least_conn;',
    hash       => 'hash $arg_k;',
    chash      => 'hash $arg_k consistent;',
    ip_hash    => 'ip_hash;',
    random     => 'random;',
    random_two => 'random two;',
);
my $check = qq{check interval=200 rise=1 fall=1 timeout=500 type=http;\n        check_http_send "GET /health HTTP/1.0\\r\\n\\r\\n";};
my @ups;
my ($upstreams, $locations) = ('', '');
for my $bal (sort keys %balancers) {
    for my $zone (0, 1) {
        my $name = "u_${bal}_" . ($zone ? 'zone' : 'nozone');
        push @ups, $name;
        my $z = $zone ? "zone $name 64k;" : '';
        $upstreams .= <<"UP";
    upstream $name {
        $balancers{$bal}
        $z
        server $addr{A};
        server $addr{B};
        server $addr{C};
        $check
    }
UP
        $locations .= "        location /$name/ { proxy_pass http://$name; }\n";
    }
}

$t->start(<<'CONF', UPSTREAMS => $upstreams, LOCATIONS => $locations, CHECK => $check, %addr);
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 256; }
http {
    access_log off;
    log_format hint '$request_uri|$status|$triage_cause|$triage_hint';
    proxy_next_upstream off;
%%UPSTREAMS%%
    upstream u_backup {
        server %%D%%;
        server %%E%% backup;
        %%CHECK%%
    }
    upstream u_down {
        server %%A%%;
        server %%C%% down;
        %%CHECK%%
    }
    upstream u_open {
        zone u_open 64k;
        server %%F%%;
        server %%G%%;
        check interval=200 rise=1 fall=1 timeout=500 type=http fail_open=on;
        check_http_send "GET /health HTTP/1.0\r\n\r\n";
    }
    upstream u_closed {
        server %%F%%;
        server %%G%%;
        %%CHECK%%
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
%%LOCATIONS%%
        location /u_backup/ { proxy_pass http://u_backup; }
        location /u_down/ { proxy_pass http://u_down; }
        location /u_open/ { proxy_pass http://u_open; }
        location /u_closed/ { proxy_pass http://u_closed; access_log logs/hint.log hint; }
        location = /status { triage_status; }
    }
}
CONF

sub states {
    my ($j, $up) = @_;
    return { map { $_->{name} => $_->{state} } @{ $j->{upstreams}{$up}{peers} || [] } };
}

sub wait_all {
    my ($what, $cond) = @_;
    my $j;
    my $ok = wait_until(sub { $j = status_json($t); $cond->($j) }, 5);
    ok($ok, $what) or diag(explain({ map { $_ => states($j, $_) } @ups, qw(u_backup u_down u_open u_closed) }));
}

wait_all('every checked peer is up', sub {
    my $j = shift;
    for my $u (@ups) {
        my $s = states($j, $u);
        return 0 unless (grep { $_ eq 'up' } values %$s) == 3;
    }
    return states($j, 'u_down')->{ $addr{C} } eq 'down' && states($j, 'u_backup')->{ $addr{E} } eq 'up';
});

sub send_all {
    my ($up, $tag, $n) = @_;
    return map { $t->http('main', "/$up/$tag$_?k=$_")->{status} } 1 .. $n;
}

# healthy: B takes its share (ip_hash: one client address goes to one peer)
for my $u (@ups) {
    my @st = send_all($u, 'before', 30);
    is_deeply(\@st, [(200) x 30], "$u: all served while healthy");
}
for my $u (grep { !/ip_hash/ } @ups) {
    ok(count_requests($b{B}, qr{^GET /$u/before}) > 0, "$u: peer B receives traffic while healthy");
}

$b{B}->set_health(503);
wait_all('peer B unhealthy in every upstream', sub {
    my $j = shift;
    return !grep { (states($j, $_)->{ $addr{B} } // '') ne 'unhealthy' } @ups;
});
for my $u (@ups) {
    my @st = send_all($u, 'after', 30);
    is_deeply(\@st, [(200) x 30], "$u: all served with B unhealthy");
    is(count_requests($b{B}, qr{^GET /$u/after}), 0, "$u: zero requests reached unhealthy B");
    is(count_requests($b{A}, qr{^GET /$u/after}) + count_requests($b{C}, qr{^GET /$u/after}), 30,
       "$u: A and C served all 30");
}

# backup takes over when the primary is unhealthy
{
    my @st = send_all('u_backup', 'healthy', 5);
    is(count_requests($b{E}, qr{^GET /u_backup/}), 0, 'backup: idle while the primary is healthy');
    $b{D}->set_health(500);
    wait_all('backup: primary D unhealthy', sub { (states($_[0], 'u_backup')->{ $addr{D} } // '') eq 'unhealthy' });
    @st = send_all('u_backup', 'failover', 10);
    is_deeply(\@st, [(200) x 10], 'backup: requests are served');
    is(count_requests($b{E}, qr{^GET /u_backup/failover}), 10, 'backup: the backup peer served them');
    is(count_requests($b{D}, qr{^GET /u_backup/failover}), 0, 'backup: none reached the unhealthy primary');
}

# configured down stays down, healthy or not
{
    my $p = peer(status_json($t), 'u_down', $addr{C});
    is($p && $p->{state}, 'down', 'configured down: state down');
    is($p && $p->{health}{state}, 'up', 'configured down: its checks pass');
    send_all('u_down', 'x', 10);
    is(count_requests($b{C}, qr{^GET /u_down/}), 0, 'configured down: no traffic');
}

# every peer unhealthy: fail_open=on lets traffic through, otherwise no_live_upstreams
{
    $b{$_}->set_health(503) for qw(F G);
    wait_all('fail_open: both peers unhealthy', sub {
        my $s = states($_[0], 'u_open');
        my $c = states($_[0], 'u_closed');
        return 4 == grep { ($_ // '') eq 'unhealthy' } @$s{ $addr{F}, $addr{G} }, @$c{ $addr{F}, $addr{G} };
    });
    my @st = send_all('u_open', 'all', 10);
    is_deeply(\@st, [(200) x 10], 'fail_open=on: every peer unhealthy, requests still served');
    ok(count_requests($b{F}, qr{^GET /u_open/all}) && count_requests($b{G}, qr{^GET /u_open/all}),
       'fail_open=on: traffic goes to all peers');
    @st = send_all('u_closed', 'all', 3);
    is_deeply(\@st, [(502) x 3], 'without fail_open: 502');
    is(count_requests($b{F}, qr{^GET /u_closed/}) + count_requests($b{G}, qr{^GET /u_closed/}), 0,
       'without fail_open: no request reaches an unhealthy peer');
    my $j = status_json($t);
    is($j->{upstreams}{u_closed}{failures}{by_cause}{no_live_upstreams}, 3,
       'without fail_open: counted as no_live_upstreams');
    # the hint points at the health checks, not at max_fails / fail_timeout
    my @l = grep { m{^/u_closed/all} } $t->log_lines('hint.log');
    is(scalar(grep { /\|502\|no_live_upstreams\|every server of the upstream is down: marked down in the configuration, or failing its health checks/ } @l),
       3, 'without fail_open: $triage_hint names the health checks') or diag explain \@l;
    # they recover: traffic is back
    $b{$_}->set_health(undef) for qw(F G);
    wait_all('fail_open: both peers recover', sub {
        my $s = states($_[0], 'u_closed');
        return 2 == grep { ($_ // '') eq 'up' } @$s{ $addr{F}, $addr{G} };
    });
    @st = send_all('u_closed', 'back', 4);
    is_deeply(\@st, [(200) x 4], 'recovered: served again');
}

is(scalar(crash_lines($t)), 0, 'no alert, crit or crash in error.log');
$t->stop;
done_testing;
