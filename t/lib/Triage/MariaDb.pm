package Triage::MariaDb;

# A real MariaDB server for tests (Debian's mariadb-server-core package; .ci/run installs
# it): mariadbd in the foreground with an empty data directory under the harness's prefix,
# listening on 127.0.0.1 and a unix socket, without grant tables (the tests never log in:
# a check reads the server's first packet). Triage::AppServer starts and stops it.
#
#   my $bin = Triage::MariaDb::binary() or plan skip_all => '...';
#   my $db = Triage::MariaDb->start($t, port => $port, socket => $path,
#                                   args => ['--max-connections=10']);
#   my @held = $db->exhaust;   # connections until the server answers "Too many connections"
#   $db->stop; $db->kill9;     # see Triage::AppServer

use strict;
use warnings;

use Carp qw(croak);
use IO::Socket::INET;
use parent 'Triage::AppServer';

# mariadbd, or undef when none is installed.
sub binary {
    return $ENV{TRIAGE_MARIADBD} if $ENV{TRIAGE_MARIADBD};
    my ($bin) = grep { -x } ('/usr/sbin/mariadbd', '/usr/sbin/mysqld');
    return $bin;
}

sub start {
    my ($class, $t, %opt) = @_;
    my $bin = binary() or croak 'no mariadbd';
    my $port = $opt{port} or croak 'port => required';
    my $dir = $class->new_dir($t, 'mariadb');
    mkdir "$dir/data" or croak "$dir/data: $!";
    my $self = $class->spawn($t, dir => $dir, listen => "127.0.0.1:$port",
        logs => ["$dir/error.log"], stop_signal => 'TERM',
        argv => [ $bin, '--no-defaults', ($> == 0 ? '--user=root' : ()),
                  "--datadir=$dir/data", '--bind-address=127.0.0.1', "--port=$port",
                  '--socket=' . ($opt{socket} // "$dir/mysqld.sock"),
                  "--pid-file=$dir/mariadbd.pid", "--log-error=$dir/error.log",
                  '--skip-grant-tables', '--skip-log-bin', '--innodb-buffer-pool-size=8M',
                  @{ $opt{args} // [] } ]);
    $self->{port} = $port;
    return $self;
}

# Connections to the server, opened and kept (each read up to its first packet) until the
# server answers one with an error packet ("Too many connections" past max_connections):
# the kept connections, or () if 50 did not get there. Close them to let clients in again.
sub exhaust {
    my ($self) = @_;
    my @held;
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}", Timeout => 2)
            or last;
        my $first = '';
        sysread($s, $first, 512);
        return @held if length($first) > 4 && substr($first, 4, 1) eq "\xff";
        push @held, $s;
    }
    return ();
}

1;
