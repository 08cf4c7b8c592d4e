#!/usr/bin/perl
# A real php-fpm behind fastcgi_pass (and, by mistake, proxy_pass), making its own faults:
# a pool whose listen.allowed_clients leaves nginx out, a worker that crashes (SIGSEGV), a
# worker killed by request_terminate_timeout, every worker busy (pm.max_children), a response header bigger than
# fastcgi_buffer_size, a plain HTTP request to its port and to its unix socket, a master
# killed (its socket file left behind) and one stopped. Each gets the cause, errno, phase
# and hint nginx's error.log line supports.
#   Run alone: prove -v t/causes_phpfpm.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(log_format_directive wait_until);
use Triage::PhpFpm;
use Triage::Verdict qw(access_verdict);

plan skip_all => 'php-fpm is not installed (apt-get install php-fpm; .ci/run installs it)'
    unless Triage::PhpFpm::binary();

my @F = qw(request_uri status triage_cause triage_errno triage_phase triage_peer triage_hint);

my $t = Triage::Harness->new;
my $www = Triage::PhpFpm::scripts($t,
    'ok.php'     => '<?php echo "all OK";',
    'crash.php'  => '<?php posix_kill(getmypid(), 11); echo "never";',
    'slow.php'   => '<?php sleep(30); echo "late";',
    'bighdr.php' => '<?php header("X-Big: " . str_repeat("a", 8000)); echo "x";',
    'wait.php'   => '<?php sleep(4); echo "done";',
);
my %addr = map { $_ => '127.0.0.1:' . $t->port("fpm_$_") } qw(main allow killed stopped busy);
my $sockdir = $t->subdir('sock');
my $stale = "$sockdir/stale.sock";
my $fpm_sock = "$sockdir/php-fpm.sock";
my %fpm = (
    main    => Triage::PhpFpm->start($t, listen => $addr{main},
                                     pool => "request_terminate_timeout = 5s\n"),
    # nginx connects from 127.0.0.1
    allow   => Triage::PhpFpm->start($t, listen => $addr{allow},
                                     pool => "listen.allowed_clients = 127.0.0.9\n"),
    stopped => Triage::PhpFpm->start($t, listen => $addr{stopped}),
    killed  => Triage::PhpFpm->start($t, listen => $stale),
    unix    => Triage::PhpFpm->start($t, listen => $fpm_sock),
    # every worker busy: requests wait in its listen queue
    busy    => Triage::PhpFpm->start($t, listen => $addr{busy}, pool => "pm = dynamic\n"
                   . "pm.start_servers = 1\npm.min_spare_servers = 1\npm.max_spare_servers = 1\n"),
);

my $fcgi = "fastcgi_param SCRIPT_FILENAME $www\$uri; fastcgi_param REQUEST_METHOD \$request_method;";
$t->start(<<"CONF", LOG_FORMAT => log_format_directive('triage', @F));
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /main/   { rewrite ^/main(/.*)\$ \$1 break; fastcgi_pass $addr{main}; $fcgi }
        location /allow/  { rewrite ^/allow(/.*)\$ \$1 break; fastcgi_pass $addr{allow}; $fcgi }
        location /stopped/ { rewrite ^/stopped(/.*)\$ \$1 break; fastcgi_pass $addr{stopped}; $fcgi }
        location /stale/  { rewrite ^/stale(/.*)\$ \$1 break; fastcgi_pass unix:$stale; $fcgi }
        location /proxy/  { proxy_pass http://$addr{main}; }
        location /proxy_unix/ { proxy_pass http://unix:$fpm_sock:/; }
        location /busy/   { rewrite ^/busy(/.*)\$ \$1 break; fastcgi_pass $addr{busy}; $fcgi
                            fastcgi_read_timeout 2s; }
    }
}
CONF

# the php-fpm masters' own faults
$fpm{killed}->kill9;    # master and worker: no time to remove its socket
$fpm{stopped}->stop;
ok(-S $stale, 'a killed php-fpm leaves its socket file');

my $err_allow = qr/upstream prematurely closed connection|recv\(\) failed \(104: Connection reset by peer\)/;
my %case = (
    '/main/ok.php' => { status => 200 },
    '/allow/ok.php' => {
        status => 502, cause => qr/^(?:premature_close|connection_reset)$/, phase => 'read_header',
        hint => qr/listen\.allowed_clients/, peer => $addr{allow},
        err => qr/\[error\] .*(?:$err_allow) while reading response header from upstream/ },
    '/main/crash.php' => {
        status => 502, cause => qr/^connection_reset$/, errno => 104, phase => 'read_header',
        hint => qr/check its logs for crashes/, peer => $addr{main},
        err => qr/\[error\] .*recv\(\) failed \(104: Connection reset by peer\) while reading response header from upstream/ },
    '/main/bighdr.php' => {
        status => 502, cause => qr/^header_too_big$/, phase => 'read_header',
        hint => qr/raise fastcgi_buffer_size/, peer => $addr{main},
        err => qr/\[error\] .*upstream sent too big header while reading response header from upstream/ },
    '/proxy/x' => {
        status => 502, cause => qr/^connection_reset$/, errno => 104, phase => 'read_header',
        hint => qr/php-fpm\) resets a plain HTTP request this way \(then fastcgi_pass\)/, peer => $addr{main},
        err => qr/\[error\] .*recv\(\) failed \(104: Connection reset by peer\) while reading response header from upstream/ },
    '/proxy_unix/x' => {
        status => 502, cause => qr/^connection_reset$/, errno => 104, phase => 'read_header',
        hint => qr/; a php-fpm socket resets a plain HTTP request this way \(then fastcgi_pass\)$/, peer => "unix:$fpm_sock",
        err => qr/\[error\] .*recv\(\) failed \(104: Connection reset by peer\) while reading response header from upstream/ },
    '/stopped/ok.php' => {
        status => 502, cause => qr/^connect_refused$/, errno => 111, phase => 'connect',
        hint => qr/nothing listens at that address/, peer => $addr{stopped},
        err => qr/\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream/ },
    '/stale/ok.php' => {
        status => 502, cause => qr/^connect_refused$/, errno => 111, phase => 'connect',
        hint => qr/the unix socket file exists but nothing listens on it/, peer => "unix:$stale",
        err => qr/\[error\] .*connect\(\) to unix:\Q$stale\E failed \(111: Connection refused\) while connecting to upstream/ },
    # two requests at once to a pool with one worker: one waits in php-fpm's listen queue,
    # the other in a script that outlasts fastcgi_read_timeout; both time out
    (map { ("/busy/wait.php?$_" => {
        status => 504, cause => qr/^read_timeout$/, errno => 110, phase => 'read_header',
        hint => qr/every one of its workers being busy \(php-fpm pm\.max_children/, peer => $addr{busy}, busy => 1,
        err => qr/\[error\] .*upstream timed out \(110: Connection timed out\) while reading response header from upstream/ }) } 1, 2),
    # php-fpm kills the worker after request_terminate_timeout (5 s)
    '/main/slow.php' => {
        status => 502, cause => qr/^(?:connection_reset|premature_close)$/, phase => 'read_header',
        hint => qr/request_terminate_timeout/, peer => $addr{main}, slow => 1,
        err => qr/\[error\] .*(?:upstream prematurely closed connection|recv\(\) failed \(104: Connection reset by peer\)) while reading response header from upstream/ },
);

# one at a time: each pool has one worker (pm.max_children 1); the slow one last
my $slow = $t->conn('main') or BAIL_OUT("connect to nginx: $!");
my @uris = sort grep { !$case{$_}{slow} && !$case{$_}{busy} } keys %case;
for my $u (@uris) {
    my $r = $t->http('main', $u);
    is($r->{status}, $case{$u}{status}, "$u: status $case{$u}{status}");
}
$slow->send_request(GET => '/main/slow.php');
{
    my @busy = map { my $c = $t->conn('main') or BAIL_OUT("connect to nginx: $!"); $c } 1, 2;
    # (whichever php-fpm takes first times out too: its script outlasts the read timeout)
    $_->send_request(GET => '/busy/wait.php?' . ($_ == $busy[0] ? 1 : 2)) for @busy;
    my @r = map { $_->read_response(timeout => 10) } @busy;
    is($r[0]{status}, 504, '/busy/wait.php?1: 504') or diag($r[0]{error});
    is($r[1]{status}, 504, '/busy/wait.php?2: 504') or diag($r[1]{error});
    ok(wait_until(sub { $fpm{busy}->log =~ /server reached pm\.max_children setting \(1\)/ }, 5),
       "php-fpm's log: every worker was busy") or diag($fpm{busy}->log);
    $_->close for @busy;
}
push @uris, '/busy/wait.php?1', '/busy/wait.php?2';
{
    my $r = $slow->read_response(timeout => 15);
    is($r->{status}, 502, '/main/slow.php: 502 once php-fpm kills the worker') or diag($r->{error});
    $slow->close;
}
push @uris, '/main/slow.php';

for my $u (@uris) {
    my $e = $case{$u};
    next if $e->{status} == 200;
    access_verdict($t, \@F, $u, map { $_ => $e->{$_} } grep { exists $e->{$_} }
                   qw(cause errno phase peer hint err));
}

$t->stop;
done_testing;
