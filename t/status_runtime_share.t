#!/usr/bin/perl
# Run-time upstreams (proxy_pass with variables) whose names come from clients cannot take
# the counters' zone from the configured upstreams.
#
# `proxy_pass http://$arg_h:9` with a resolver (a local DNS server answering NXDOMAIN): every
# request with a new name is a new run-time upstream in the zone. 700 of them, more than a
# 256k zone holds (about 510 peers). nginx-triage gives run-time upstreams one entry per 2 KB
# of zone (128 here) and counts the rest together as "(other run-time upstreams)":
# - the status lists 128 named run-time upstreams and the overflow entry, whose
#   host_not_found failures add up to the 700 requests (none lost);
# - one warning in error.log names the share; the zone is never full;
# - the recent failures still name the last requests' upstreams;
# - a configured upstream is counted after the flood, and so is one added by a reload
#   (without the share, the flood fills the zone and both go uncounted);
# - the share holds across the reload: a new name goes to the overflow entry.
# Run alone: prove -v t/status_runtime_share.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness;
use Triage::Backend;
use Triage::Checks qw(status_json peer);

my $t = Triage::Harness->new;
my $dns = $t->backend('dns_nxdomain');
my ($c1, $c2) = map { Triage::Backend::closed_port() } 1 .. 2;
my $OTHER = '(other run-time upstreams)';
my $FLOOD = 700;
my $SHARE = 128;    # 256k / 2048

my $conf = <<'CONF';
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 128; }
http {
    triage_zone 256k;
    access_log off;
    resolver 127.0.0.1:%%DNS%% valid=60s ipv6=off;
    resolver_timeout 2s;
    proxy_next_upstream off;
    upstream app { server 127.0.0.1:%%C1%%; }
%%LATE_UPSTREAM%%
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /dyn { proxy_pass http://$arg_h:9; }
        location /app { proxy_pass http://app; }
%%LATE_LOCATION%%
        location = /status { triage_status; }
    }
}
CONF
my %vars = (DNS => $dns->port, C1 => $c1, C2 => $c2, LATE_UPSTREAM => '', LATE_LOCATION => '');
$t->start($conf, %vars);

# the flood, on keep-alive connections (nginx closes one after 1000 requests)
my %status;
my $c = $t->conn('main');
for my $i (1 .. $FLOOD) {
    my $r = $c->request(GET => "/dyn?h=n$i.test");
    ($c, $r) = ($t->conn('main'), undef) unless $r->{status};
    $r //= $c->request(GET => "/dyn?h=n$i.test");
    $status{ $r->{status} }++;
}
is_deeply(\%status, { 502 => $FLOOD }, "$FLOOD requests to names that do not resolve: 502 each");

sub run_time {
    my ($j) = @_;
    my $u = $j->{upstreams} || {};
    return { map { $_ => $u->{$_} } grep { $u->{$_}{dynamic} } keys %$u };
}
sub not_found { $_[0]{failures_by_cause}{host_not_found} // 0 }

my $j = status_json($t);
my $rt = run_time($j);
my @named = grep { $_ ne $OTHER } keys %$rt;
is(scalar @named, $SHARE, "the status lists $SHARE run-time upstreams by name (one per 2 KB of zone)");
ok($rt->{$OTHER}, "and \"$OTHER\"");
is(not_found($rt->{$OTHER}), $FLOOD - $SHARE, 'which counts the failures of the others');
my $sum = 0;
$sum += not_found($_) for values %$rt;
is($sum, $FLOOD, 'no failure is lost: host_not_found adds up to the requests');
ok(!(grep { !/^n\d+\.test:9$/ } @named), 'the named ones are the requests\' names')
    or diag(join ' ', sort @named);

my $log = $t->error_log_since(0);
my @warn = $log =~ /(\[warn\] .*run-time upstreams .*)/g;
is(scalar @warn, 1, 'one warning in error.log') or diag($log);
like($warn[0] // '', qr/fill their share of zone "triage" \(128 entries\): new ones are counted together as "\(other run-time upstreams\)"; configured upstreams keep their room/,
    'it names the share, the overflow entry and what it protects');
unlike($log, qr/is full/, 'the zone is never full');

my $rf = $j->{recent_failures} || [];
is($rf->[0]{upstream}, "n$FLOOD.test:9", 'the recent failures name the last request\'s upstream');

# a configured upstream after the flood
is($t->http('main', '/app')->{status}, 502, '/app (nothing listens): 502');
my $p = peer(status_json($t), 'app', "127.0.0.1:$c1");
is($p && $p->{failures}{by_cause}{connect_refused}, 1, 'the configured upstream\'s failure is counted')
    or diag(explain $p);

# a reload adds an upstream
$t->reload($conf, %vars,
    LATE_UPSTREAM => "    upstream late { server 127.0.0.1:$c2; }",
    LATE_LOCATION => '        location /late { proxy_pass http://late; }');
is($t->http('main', '/late')->{status}, 502, 'after a reload, /late (nothing listens): 502');
$j = status_json($t);
$p = peer($j, 'late', "127.0.0.1:$c2");
is($p && $p->{failures}{by_cause}{connect_refused}, 1, 'the added upstream\'s failure is counted')
    or diag(explain $p);

is($t->http('main', '/dyn?h=after.test')->{status}, 502, 'a new name after the reload: 502');
$rt = run_time(status_json($t));
is(not_found($rt->{$OTHER}), $FLOOD - $SHARE + 1, 'it is counted in the overflow entry: the share holds');
ok(!$rt->{'after.test:9'}, 'not under its own name');
unlike($t->error_log_since(0), qr/\[(alert|crit|emerg)\]/, 'no alert in error.log');

done_testing;
