#!/usr/bin/perl
# type=fastcgi checks (nginx_upstream_check_module's check_fastcgi_param) against a real
# php-fpm: its ping.path, a script, a missing script (404), a script answering 503, a
# redirect (302), over TCP and a unix socket; an unhealthy peer leaves fastcgi_pass's
# rotation. Hostile targets (an HTTP server, silence, close, RST, a closed port) mark the
# peer down with the right reason and crash nothing.
#   Run alone: prove -v t/checks_fastcgi.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness;
use Triage::Backend;
use Triage::Checks qw(settled no_crash expect_verdicts);
use Triage::PhpFpm;

plan skip_all => 'php-fpm is not installed (apt-get install php-fpm; .ci/run installs it)'
    unless Triage::PhpFpm::binary();

my $t = Triage::Harness->new;
my $www = Triage::PhpFpm::scripts($t,
    'ok.php'    => '<?php echo "all OK";',
    'down.php'  => '<?php http_response_code(503); echo "maintenance";',
    'moved.php' => '<?php header("Location: /login");',
);
my $fpm_addr = '127.0.0.1:' . $t->port('fpm');
my $sock = $t->subdir('sock') . '/php-fpm.sock';
my $ping = "ping.path = /ping\nping.response = pong\n";
my $fpm = Triage::PhpFpm->start($t, listen => $fpm_addr, pool => $ping);
my $fpm_unix = Triage::PhpFpm->start($t, listen => $sock, pool => $ping);

# FastCGI records sent to servers that do not speak it (raw: they answer the burst)
my $closed = Triage::Backend::closed_port();
my %h = (
    http    => $t->backend('custom', protocol => 'raw', then => 'close',
                   respond => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    silent  => $t->backend('silent'),
    close   => $t->backend('close', protocol => 'raw'),
    reset   => $t->backend('reset', protocol => 'raw'),
);
my %reason = (
    http   => 'invalid_header',
    silent => 'read_timeout',
    close  => 'premature_close',
    reset  => 'connection_reset',
    closed => 'connect_refused',
);

my $check = 'check interval=200 rise=1 fall=1 timeout=1000 type=fastcgi;';
my $ping_params = 'check_fastcgi_param REQUEST_METHOD GET; check_fastcgi_param SCRIPT_NAME /ping; '
    . 'check_fastcgi_param SCRIPT_FILENAME /ping;';
sub script { "check_fastcgi_param REQUEST_METHOD GET; check_fastcgi_param SCRIPT_FILENAME $www/$_[0];" }

# name => [peer, directives, expected state, last_error, last_status]
my %ups = (
    ping       => [$fpm_addr, "$ping_params check_http_expect_body ~ \"^pong\$\";", 'up', undef, 200],
    ping_unix  => ["unix:$sock", $ping_params, 'up', undef, 200],
    script     => [$fpm_addr, script('ok.php') . ' check_http_expect_body ~ "all OK";', 'up', undef, 200],
    body_bad   => [$fpm_addr, script('ok.php') . ' check_http_expect_body ~ "^pong";', 'unhealthy', 'body_mismatch', 200],
    missing    => [$fpm_addr, script('nothere.php'), 'unhealthy', 'bad_status', 404],
    maint      => [$fpm_addr, script('down.php'), 'unhealthy', 'bad_status', 503],
    moved      => [$fpm_addr, script('moved.php'), 'up', undef, 302],
    moved_2xx  => [$fpm_addr, script('moved.php') . ' check_http_expect_alive http_2xx;', 'unhealthy', 'bad_status', 302],
    # UCM's default parameters (SCRIPT_FILENAME index.php): php-fpm finds no such script
    ucm_default => [$fpm_addr, '', 'unhealthy', 'bad_status', 404],
);
for my $name (keys %h) {
    $ups{"hostile_$name"} = [$h{$name}->addr, $ping_params, 'unhealthy', $reason{$name}];
}
$ups{hostile_closed} = ["127.0.0.1:$closed", $ping_params, 'unhealthy', $reason{closed}];

my $conf_ups = '';
for my $name (sort keys %ups) {
    my ($peer, $extra) = @{ $ups{$name} };
    $conf_ups .= "    upstream $name { server $peer; $check $extra }\n";
}

$t->start(<<"CONF");
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 256; }
http {
    access_log off;
$conf_ups
    # php-fpm and a server that is not FastCGI: the check takes the second out of rotation
    upstream app {
        server $fpm_addr;
        server ${\ $h{http}->addr };
        $check
        $ping_params
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /status { triage_status; }
        location = /cs { check_status json; }
        location /app/ {
            fastcgi_pass app;
            fastcgi_param SCRIPT_FILENAME $www/ok.php;
            fastcgi_param REQUEST_METHOD \$request_method;
        }
    }
}
CONF

my @workers = $t->worker_pids;

expect_verdicts($t, 'fastcgi', { map { $_ => [@{ $ups{$_} }[0, 2 .. $#{ $ups{$_} }]] } keys %ups });
ok($h{http}->connections > 0 && $h{reset}->connections > 0, 'the hostile peers were really contacted');

# rotation: only php-fpm answers, every time
{
    my $bad = settled($t, 'app', $h{http}->addr, 'unhealthy', 'invalid_header');
    is($bad && $bad->{state}, 'unhealthy', 'app: the HTTP server is out of rotation');
    my $good = settled($t, 'app', $fpm_addr, 'up');
    is($good && $good->{state}, 'up', 'app: php-fpm is up');
    my @got = map { my $r = $t->http('main', "/app/x$_"); "$r->{status} $r->{body}" } 1 .. 8;
    is_deeply(\@got, [("200 all OK") x 8], 'app: 8 requests, all answered by php-fpm')
        or diag(explain(\@got));
}

# UCM's own status page names the type
{
    my $r = $t->http('main', '/cs?format=json');
    like($r->{body}, qr/"type":\s*"fastcgi"/, 'check_status json: type fastcgi');
}

# php-fpm stops: its peers go down with connect_refused (TCP) and socket_not_found or
# connect_refused (the unix socket is removed on a graceful stop)
$fpm->stop;
{
    my $p = settled($t, 'ping', $fpm_addr, 'unhealthy', 'connect_refused');
    is($p && $p->{health}{last_error}, 'connect_refused', 'php-fpm stopped: ping is unhealthy, connect_refused');
}

no_crash($t, \@workers);
$t->stop;
done_testing;
