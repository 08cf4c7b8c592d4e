#!/usr/bin/perl
# nginx with the module under valgrind's memcheck, master and workers, through the paths where
# the module's FFI glue meets nginx's memory: configuration (TLS checks verifying against a
# trusted certificate, a check_http_expect_body regex, a fallback file), failures of every
# kind answered by triage_fallback (refused, timed out, reset, a backend's own 502 replaced,
# no live upstreams, a run-time upstream, a unix socket with mode 000), the status in its
# three formats, HTTPS, TCP, MySQL and AJP health checks, and a reload. Then every valgrind log is read:
# one invalid read or write, one use of uninitialised memory, one bad free, in any process,
# fails the test with valgrind's report.
# Needs valgrind: .ci/run installs it, and so does the test when run as root; missing, it fails.
#   Run alone: prove -v t/memcheck.t
# The whole suite under memcheck, after changes to FFI code (t/memcheck.t itself then runs
# valgrind under valgrind: leave it out):
#   printf '#!/bin/sh\nexec valgrind -q --vgdb=no --log-file=/tmp/vg.%%p %s "$@"\n' \
#       "$PWD/nginx-build/out/sbin/nginx" > /tmp/vg-nginx; chmod +x /tmp/vg-nginx
#   TRIAGE_NGINX=/tmp/vg-nginx prove $(ls t/*.t | grep -v memcheck); cat /tmp/vg.*   (all empty)

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(wait_until self_signed_cert);
use Triage::Backend;
use Triage::Checks qw(status_json peer crash_lines);

sub valgrind { my $p = `command -v valgrind 2>/dev/null`; chomp $p; $p }
my $valgrind = valgrind();
if (!$valgrind && $> == 0) {
    note('installing valgrind');
    system('apt-get install -y -qq valgrind >/dev/null 2>&1'
        . ' || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }');
    $valgrind = valgrind();
}
ok($valgrind, 'valgrind is installed') or diag('as root: apt-get install valgrind (.ci/run does)');
die "valgrind missing\n" unless $valgrind;

my $probe = Triage::Harness->new;    # only for its prefix: the wrapper and the valgrind logs
my $dir = $probe->subdir('vg');
my $wrapper = "$dir/nginx";
open my $w, '>', $wrapper or die "$wrapper: $!";
# forked workers get their own log (%p); -q: a log holds nothing but errors
print $w "#!/bin/sh\nexec $valgrind -q --vgdb=no --error-exitcode=99 --log-file=$dir/vg.%p "
    . "$Triage::Harness::NGINX \"\$@\"\n";
close $w;
chmod 0755, $wrapper;

my $t = Triage::Harness->new(nginx => $wrapper);
my $tls = $t->subdir('tls');
self_signed_cert($tls, 'good.test');
open my $fb, '>', $t->prefix . '/conf/sorry.json' or die $!;
print $fb qq({"sorry": true}\n);
close $fb;

my $silent = $t->backend('silent');
my $reset = $t->backend('reset');
my $own502 = $t->backend('bad_gateway');
my $sockdir = $t->subdir('sock');
my $locked = $t->backend('ok', unix => "$sockdir/php.sock", mode => 0000);
my $closed = Triage::Backend::closed_port();
# a MySQL server past max_connections (MariaDB's bytes), an AJP container
my $mysql = $t->backend('greeting', then => 'close',
    respond => "\x17\x00\x00\x00\xff\x10\x04Too many connections");
my $ajp = $t->backend('custom', protocol => 'raw', respond => "AB\x00\x01\x09", then => 'keep');

my $conf = <<'CONF';
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 128; }
http {
    access_log off;
    upstream refused  { server 127.0.0.1:%%CLOSED%%; }
    upstream checked  { server 127.0.0.1:%%CLOSED%%; check interval=200 rise=1 fall=1 timeout=1000 type=tcp; }
    upstream mysql    { server %%MYSQL%%; check interval=200 rise=1 fall=1 timeout=1000 type=mysql; }
    upstream ajp      { server %%AJP%%; check interval=200 rise=1 fall=1 timeout=1000 type=ajp; }
    upstream silent   { server %%SILENT%%; }
    upstream reset    { server %%RESET%%; }
    upstream own502   { server %%OWN502%%; }
    upstream nolive {
        zone nolive 64k;    # both workers see the failed peers
        server 127.0.0.1:%%CLOSED%% max_fails=1 fail_timeout=30s;
        server 127.0.0.2:%%CLOSED%% max_fails=1 fail_timeout=30s;
    }
    upstream https_good {
        server 127.0.0.1:%%PORT_tls%%;
        check interval=200 rise=1 fall=1 timeout=3000 type=https;
        check_http_send "GET /health HTTP/1.0\r\n\r\n";
        check_http_expect_body ~ "^default OK$";
        check_ssl_name good.test;
        check_ssl_verify on;
        check_ssl_trusted_certificate %%TLS%%/good.test.crt;
    }
    triage_fallback json;
    triage_fallback_details on;
    proxy_read_timeout 1s;
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /status { triage_status; }
        location /refused { proxy_pass http://refused; }
        location /silent  { proxy_pass http://silent; }
        location /reset   { proxy_pass http://reset; }
        location /own502  { triage_fallback html upstream_errors=on; proxy_pass http://own502; }
        location /nolive  { proxy_pass http://nolive; }
        location /file    { triage_fallback file=sorry.json; proxy_pass http://refused; }
        location /auto    { triage_fallback auto; proxy_pass http://refused; }
        location /var     { set $b 127.0.0.1:%%CLOSED%%; proxy_pass http://$b; }
        location /php     { fastcgi_pass unix:%%SOCK%%; }
    }
    server {
        listen 127.0.0.1:%%PORT_tls%% ssl;
        ssl_certificate %%TLS%%/good.test.crt;
        ssl_certificate_key %%TLS%%/good.test.key;
        location = /health { return 200 "default OK"; }
    }
}
CONF
my %vars = (CLOSED => $closed, SILENT => $silent->addr, RESET => $reset->addr,
    OWN502 => $own502->addr, TLS => $tls, SOCK => "$sockdir/php.sock",
    MYSQL => $mysql->addr, AJP => $ajp->addr);

my ($rc, $out) = $t->test_config($conf, %vars);
is($rc, 0, 'nginx -t under memcheck: exit 0 (99 would be a memcheck error)') or diag $out;

$t->start($conf, %vars);

# Every failure kind, answered by the fallback: the status and the cause the page names.
sub failures {
    my ($round) = @_;
    my $c = $t->conn('main');
    for my $i (1 .. 2) {
        my $r = $c->request(GET => "/refused/$i");
        is($r->{status}, 502, "$round: refused, keep-alive request $i: 502");
        like($r->{body}, qr/"cause":"connect_refused"/, "$round: refused $i: the JSON page");
    }
    my %want = (
        '/silent' => [504, 'read_timeout'],
        '/reset'  => [502, 'connection_reset'],
        '/own502' => [502, 'upstream_502'],
        '/var'    => [502, 'connect_refused'],
        '/php'    => [502, 'permission_denied'],
    );
    for my $path (sort keys %want) {
        my ($status, $cause) = @{ $want{$path} };
        my $r = $t->http('main', $path, timeout => 20);
        is($r->{status}, $status, "$round: $path: $status");
        like($r->{body}, qr/\Q$cause\E/, "$round: $path: the page names $cause");
    }
    my $r = $t->http('main', '/nolive');
    is($r->{status}, 502, "$round: /nolive: 502");
    $r = $t->http('main', '/nolive');
    like($r->{body}, qr/"cause":"no_live_upstreams"/, "$round: /nolive again: no_live_upstreams");
    ok(defined $r->{headers}{'retry-after'}, "$round: /nolive: Retry-After");
    $r = $t->http('main', '/file');
    is($r->{body}, qq({"sorry": true}\n), "$round: file= body");
    $r = $t->http('main', '/auto', headers => { Accept => 'text/html' });
    like($r->{headers}{'content-type'} // '', qr{^text/html}, "$round: auto: html for a browser");
    $r = $t->http('main', '/refused', method => 'HEAD');
    is($r->{body}, '', "$round: HEAD: no body");
}

# The status in its three formats, with the failures just counted.
sub status {
    my ($round) = @_;
    my $j = status_json($t);
    ok(($j->{upstreams}{refused}{totals}{failures} // 0) > 0, "$round: status JSON counts the failures")
        or diag explain $j->{upstreams}{refused};
    my $r = $t->http('main', '/status?format=prometheus');
    like($r->{body}, qr/^nginx_triage_\w+\{/m, "$round: status in prometheus");
    $r = $t->http('main', '/status?format=html');
    like($r->{body}, qr/<html/i, "$round: status in html");
}

failures('start');
status('start');

my $good = '127.0.0.1:' . $t->port('tls');
my $h = wait_until(sub {
    my $p = peer(status_json($t), 'https_good', $good);
    $p && ($p->{state} // '') eq 'up' && ($p->{health}{last_status} // 0) == 200 ? $p : undef;
}, 30, 0.2);
ok($h, 'https check, certificate verified, body matched: up');
$h = wait_until(sub {
    my $p = peer(status_json($t), 'checked', "127.0.0.1:$closed");
    $p && ($p->{health}{last_error} // '') ne '' ? $p : undef;
}, 30, 0.2);
is($h && $h->{health}{last_error}, 'connect_refused', 'tcp check of a closed port: connect_refused');
$h = wait_until(sub {
    my $p = peer(status_json($t), 'mysql', $mysql->addr);
    $p && ($p->{health}{last_error} // '') ne '' ? $p : undef;
}, 30, 0.2);
is($h && $h->{health}{last_error}, 'mysql_too_many_connections', 'mysql check, error packet: mysql_too_many_connections');
$h = wait_until(sub {
    my $p = peer(status_json($t), 'ajp', $ajp->addr);
    $p && ($p->{state} // '') eq 'up' ? $p : undef;
}, 30, 0.2);
ok($h, 'ajp check, CPong: up');

$t->reload($conf, %vars);
failures('after reload');
status('after reload');

$t->stop;
# the socket with mode 000 makes nginx log its connect() at crit: that one line is expected
is_deeply([grep { !/connect\(\) to unix:\S+ failed \(13: Permission denied\)/ } crash_lines($t)], [],
    'no alert, crit or crash in error.log but the mode 000 socket\'s');

# The reports. An empty log is a process that ran under memcheck with no error.
opendir my $dh, $dir or die "$dir: $!";
my @logs = map {"$dir/$_"} grep {/^vg\.\d+$/} readdir $dh;
closedir $dh;
# nginx -t, then the master, its 2 workers, the 2 workers after the reload
cmp_ok(scalar @logs, '>=', 6, 'memcheck ran nginx -t, the master and every worker');
for my $log (sort @logs) {
    my $report = do { local (@ARGV, $/) = ($log); <> } // '';
    is($report, '', "memcheck: no error in process " . ($log =~ /(\d+)$/)[0]) or diag $report;
}

done_testing();
