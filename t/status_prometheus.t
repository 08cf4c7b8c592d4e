#!/usr/bin/perl
# Prometheus metrics from a live nginx: `promtool check metrics` is clean on the real output
# (with failures of several causes, filters, a reload), every family has HELP and TYPE, the
# samples carry the values of the JSON document taken alongside.
#   Run alone: prove -v t/status_prometheus.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Triage::Harness;
use Triage::Backend;
use Triage::Status qw(need_tools promtool_check);

need_tools('promtool');

my $t = Triage::Harness->new;
my $ok = $t->backend('ok');
my $silent = $t->backend('silent');
my $own502 = $t->backend('bad_gateway');
my ($c1, $c2, $c3) = map { Triage::Backend::closed_port() } 1 .. 3;

my $conf = <<'CONF';
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 64; }
http {
    access_log off;
    proxy_read_timeout 1s;
    proxy_next_upstream off;
    upstream app {
        zone app 64k;
        server %%OK%%;
        server 127.0.0.1:%%C1%% max_fails=1 fail_timeout=60s;
        server 127.0.0.1:%%C2%% down;
    }
    upstream dead {
        zone dead 64k;
        server 127.0.0.1:%%C3%% max_fails=1 fail_timeout=60s;
        server %%SILENT%% max_fails=1 fail_timeout=60s;
    }
    upstream own { server %%OWN502%%; }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /app  { proxy_pass http://app; }
        location /dead { proxy_pass http://dead; proxy_next_upstream error timeout; }
        location /own  { proxy_pass http://own; }
        location = /metrics { triage_status prometheus; if ($arg_job) { set $scraper $arg_job; } }
        location = /status  { triage_status; }
        location = /metrics_gz { triage_status prometheus; gzip on; gzip_types text/plain; gzip_min_length 1; }
    }
}
CONF
my %vars = (OK => $ok->addr, SILENT => $silent->addr, OWN502 => $own502->addr,
            C1 => $c1, C2 => $c2, C3 => $c3);
$t->start($conf, %vars);

# refused + read timeout in dead (then no live upstreams), the backend's own 502, a refused
# try in app (bounded: 1 request in 3 goes to 127.0.0.1:C1)
my $tripped;
for my $i (1 .. 9) { $tripped = $i, last if $t->http('main', "/app?$i")->{status} == 502 }
ok($tripped, "app: 127.0.0.1:$c1 refused request $tripped");
my $d1 = $t->http('main', '/dead?1', timeout => 10)->{status};
ok($d1 == 502 || $d1 == 504, "/dead?1: $d1 (refused and read timeout)");
is($t->http('main', '/dead?2')->{status}, 502, '/dead?2: 502 no live upstreams');
is($t->http('main', '/own')->{status}, 502, '/own: the backend\'s own 502');

my $m = $t->http('main', '/metrics');
is($m->{status}, 200, '/metrics: 200');
is($m->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
   '/metrics: text format 0.0.4 Content-Type');
is($m->{headers}{'cache-control'}, 'no-store', '/metrics: no-store');
# gzip_types text/plain: the metrics are compressed, as any text/plain response
{
    my $g = $t->http('main', '/metrics_gz', headers => { 'Accept-Encoding' => 'gzip' });
    is($g->{headers}{'content-encoding'}, 'gzip', 'gzip_types text/plain: the metrics are gzipped');
}
# an if block in the location: the same format (it runs the location's handler)
is($t->http('main', '/metrics?job=x')->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
   '/metrics?job=x, through an if block: the same text format');
my $j = decode_json($t->http('main', '/status')->{body});
my $text = $m->{body};

my ($clean, $out) = promtool_check($t, $text);
ok($clean, 'promtool check metrics: clean') or diag("$out\n$text");

# Parse: families (HELP/TYPE) and samples.
my (%type, %help, @samples);
for (split /\n/, $text) {
    if (/^# HELP (\S+) (.+)$/) { $help{$1} = $2; next }
    if (/^# TYPE (\S+) (\S+)$/) { $type{$1} = $2; next }
    my ($name, $labels, $value) = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/ or do { fail("sample line: $_"); next };
    my %l;
    while (($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g) { $l{$1} = $2 }
    push @samples, { name => $name, labels => \%l, value => $value };
}
sub value {
    my ($name, %want) = @_;
    my @s = grep { my $s = $_; $s->{name} eq $name
                   && !grep { ($s->{labels}{$_} // "\0") ne $want{$_} } keys %want } @samples;
    return @s == 1 ? $s[0]{value} : @s ? 'several' : undef;
}

my %families = (
    nginx_triage_upstream_failures_total    => 'counter',
    nginx_triage_peer_up                    => 'gauge',
    nginx_triage_upstream_requests_total    => 'counter',
    nginx_triage_peer_responses_total       => 'counter',
    nginx_triage_peer_state                 => 'gauge',
    nginx_triage_info                       => 'gauge',
    nginx_triage_config_generation          => 'gauge',
    nginx_triage_config_load_timestamp_seconds => 'gauge',
    nginx_triage_peer_header_time_seconds   => 'gauge',
    nginx_triage_peer_response_time_seconds => 'gauge',
    nginx_triage_zone_size_bytes            => 'gauge',
    nginx_triage_zone_entries               => 'gauge',
    nginx_triage_zone_reused_total          => 'counter',
    nginx_triage_zone_full                  => 'gauge',
);
for my $f (sort keys %families) {
    is($type{$f}, $families{$f}, "$f: TYPE $families{$f}");
    ok($help{$f}, "$f: HELP");
}
is(scalar(grep { !$families{ $_->{name} } } @samples), 0, 'no sample outside the families');

is(value('nginx_triage_info', version => $j->{version}, nginx_version => $t->nginx_version), 1,
   'info: versions');
is(value('nginx_triage_config_generation'), 1, 'config generation 1');
# the zones (not in the JSON, whose top-level keys are the issue's): triage only, no checks here
is_deeply([ sort map { $_->{labels}{zone} } grep { $_->{name} eq 'nginx_triage_zone_entries' } @samples ],
          ['triage'], 'zones: triage only');
{
    my %l = (zone => 'triage');
    is(value('nginx_triage_zone_size_bytes', %l), 4 * 1024 * 1024, 'zone triage: the default 4m');
    cmp_ok(value('nginx_triage_zone_entries', %l), '>', 0, 'zone triage: entries');
    is(value('nginx_triage_zone_reused_total', %l), 0, 'zone triage: none reused');
    is(value('nginx_triage_zone_full', %l), 0, 'zone triage: never full');
}
for my $up (sort keys %{ $j->{upstreams} }) {
    for my $p (@{ $j->{upstreams}{$up}{peers} }) {
        my %l = (upstream => $up, peer => $p->{name});
        my $what = "$up/$p->{name}";
        is(value('nginx_triage_peer_up', %l), $p->{state} eq 'up' ? 1 : 0, "$what: peer_up ($p->{state})");
        is(value('nginx_triage_peer_state', %l, state => $p->{state}), 1, "$what: peer_state");
        is(value('nginx_triage_upstream_requests_total', %l), $p->{requests}, "$what: requests_total");
        for my $class (qw(1xx 2xx 3xx 4xx 5xx)) {
            is(value('nginx_triage_peer_responses_total', %l, code_class => $class),
               $p->{responses}{$class}, "$what: responses_total $class");
        }
        my %by = %{ $p->{failures}{by_cause} };
        my @got = map { $_->{labels}{cause} } grep {
            $_->{name} eq 'nginx_triage_upstream_failures_total'
            && $_->{labels}{upstream} eq $up && $_->{labels}{peer} eq $p->{name} } @samples;
        is_deeply([ sort @got ], [ sort keys %by ], "$what: failure causes listed");
        is(value('nginx_triage_upstream_failures_total', %l, cause => $_), $by{$_},
           "$what: failures_total $_") for sort keys %by;
    }
}
is(value('nginx_triage_upstream_failures_total', upstream => 'dead', peer => '',
         cause => 'no_live_upstreams'), 1, 'dead: no_live_upstreams under peer=""');
is(value('nginx_triage_upstream_failures_total', upstream => 'own', peer => $own502->addr,
         cause => 'upstream_502'), 1, 'own: upstream_502 counted');
is(value('nginx_triage_peer_up', upstream => 'app', peer => "127.0.0.1:$c1"), 0,
   'app: the refused peer is not up');
is(value('nginx_triage_peer_state', upstream => 'app', peer => "127.0.0.1:$c2", state => 'down'), 1,
   'app: the down peer');

# --- filters, HEAD, a reload
$m = $t->http('main', '/metrics?upstream=dead&state=unhealthy');
($clean, $out) = promtool_check($t, $m->{body});
ok($clean, 'filtered: promtool clean') or diag($out);
my @peers = $m->{body} =~ /^nginx_triage_peer_up\{upstream="([^"]*)",peer="([^"]*)"\}/mg;
is_deeply(\@peers, [ dead => "127.0.0.1:$c3", dead => $silent->addr ],
          '?upstream=dead&state=unhealthy: only dead\'s unavailable peers');
my $h = $t->http('main', '/metrics', method => 'HEAD');
is($h->{status}, 200, 'HEAD: 200');
is($h->{body}, '', 'HEAD: no body');
$t->reload($conf, %vars);
$m = $t->http('main', '/metrics');
($clean, $out) = promtool_check($t, $m->{body});
ok($clean, 'after a reload: promtool clean') or diag($out);
like($m->{body}, qr/^nginx_triage_config_generation 2$/m, 'after a reload: generation 2');
# a check that can fail: promtool rejects a counter without _total and a broken label
my ($bad) = promtool_check($t, "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests 1\n");
ok(!$bad, 'promtool flags a counter without _total (the check is real)');

$t->stop;
done_testing;
