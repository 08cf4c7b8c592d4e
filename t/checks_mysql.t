#!/usr/bin/perl
# type=mysql checks (nginx_upstream_check_module's) against a real MariaDB: its handshake
# over TCP and its unix socket passes; past max_connections the server answers "Too many
# connections" (error 1040) in place of its handshake, and the peer goes unhealthy with
# mysql_too_many_connections (UCM would call it up), then healthy again once connections
# are freed; stopped, connect_refused. Servers that are not MySQL (an SSH banner, an HTTP
# server, silence, a close, a reset, a closed port) get the right reason, and crash nothing.
#   Run alone: prove -v t/checks_mysql.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness;
use Triage::Backend;
use Triage::Checks qw(settled no_crash start_checked expect_verdicts);
use Triage::MariaDb;

plan skip_all => 'mariadbd is not installed (apt-get install mariadb-server-core; .ci/run installs it)'
    unless Triage::MariaDb::binary();

my $t = Triage::Harness->new;
my $db_port = $t->port('mariadb');
my $db_addr = "127.0.0.1:$db_port";
my $sock = $t->subdir('sock') . '/mysqld.sock';
# 10 is MariaDB's smallest max_connections; unauthenticated connections count
my $db = Triage::MariaDb->start($t, port => $db_port, socket => $sock,
    args => ['--max-connections=10', '--connect-timeout=60']);

my $closed = Triage::Backend::closed_port();
my %h = (
    ssh     => $t->backend('greeting', respond => "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
    http    => $t->backend('ok'),
    silent  => $t->backend('silent'),
    close   => $t->backend('greeting', then => 'close'),
    reset   => $t->backend('greeting', then => 'reset'),
);
# name => [peer, expected state, last_error, last_status (none: not HTTP)]
my %ups = (
    db      => [$db_addr, 'up', undef, undef],
    db_unix => ["unix:$sock", 'up', undef, undef],
    ssh     => [$h{ssh}->addr, 'unhealthy', 'invalid_header', undef],
    # an HTTP server waits for a request that a mysql check never sends
    http    => [$h{http}->addr, 'unhealthy', 'read_timeout', undef],
    silent  => [$h{silent}->addr, 'unhealthy', 'read_timeout', undef],
    close   => [$h{close}->addr, 'unhealthy', 'premature_close', undef],
    reset   => [$h{reset}->addr, 'unhealthy', 'connection_reset', undef],
    closed  => ["127.0.0.1:$closed", 'unhealthy', 'connect_refused', undef],
);

my $check = 'check interval=200 rise=1 fall=1 timeout=500 type=mysql;';
my @workers = start_checked($t, $check, \%ups);

expect_verdicts($t, 'mysql', \%ups);
ok($h{ssh}->connections > 0 && $h{reset}->connections > 0, 'the other servers were really contacted');
is($h{http}->count, 0, 'the HTTP server got no request (a mysql check sends nothing)');

# UCM's own status page names the type
like($t->http('main', '/cs?format=json')->{body}, qr/"type":\s*"mysql"/, 'check_status json: type mysql');

# max_connections reached: MariaDB answers the check with error 1040
{
    my @held = $db->exhaust;
    ok(@held >= 10, 'MariaDB refuses connections past max_connections (' . scalar(@held) . ' held)');
    my $p = settled($t, 'db', $db_addr, 'unhealthy', 'mysql_too_many_connections');
    is($p && $p->{health}{last_error}, 'mysql_too_many_connections',
       'too many connections: db is unhealthy, mysql_too_many_connections');
    ok($t->wait_error_log(qr/\[warn\] .*upstream db peer \Q$db_addr\E is unhealthy: mysql_too_many_connections after 1 checks/),
       'error.log: the transition names mysql_too_many_connections');
    # the unix socket's connections count against the same limit
    my $u = settled($t, 'db_unix', "unix:$sock", 'unhealthy', 'mysql_too_many_connections');
    is($u && $u->{health}{last_error}, 'mysql_too_many_connections', 'the unix socket too');
    close $_ for @held;
    $p = settled($t, 'db', $db_addr, 'up');
    is($p && $p->{state}, 'up', 'connections freed: db is up again');
    ok($t->wait_error_log(qr/\[warn\] .*upstream db peer \Q$db_addr\E is healthy after 1 checks/),
       'error.log: db healthy again');
}

# MariaDB stops: connect_refused
$db->stop;
{
    my $p = settled($t, 'db', $db_addr, 'unhealthy', 'connect_refused');
    is($p && $p->{health}{last_error}, 'connect_refused', 'MariaDB stopped: db is unhealthy, connect_refused');
}

no_crash($t, \@workers);
$t->stop;
done_testing;
