package Triage::Uwsgi;

# A real uWSGI for tests (Debian's uwsgi-core and uwsgi-plugin-python3; .ci/run installs
# them): a master and one worker serving a WSGI app given as Python source over the uwsgi
# protocol, in the foreground, under the harness's prefix (Triage::AppServer).
#
#   my $bin = Triage::Uwsgi::binary() or plan skip_all => '...';
#   my $u = Triage::Uwsgi->start($t, listen => "127.0.0.1:$port",   # or a socket path
#                                app => $python, args => ['--harakiri', 6]);
#   $u->stop; $u->kill9;   # see Triage::AppServer

use strict;
use warnings;

use Carp qw(croak);
use parent 'Triage::AppServer';

# The uWSGI launcher with the Python 3 plugin built in, or undef when none is installed.
sub binary {
    return $ENV{TRIAGE_UWSGI} if $ENV{TRIAGE_UWSGI};
    my ($bin) = grep { -x } ('/usr/bin/uwsgi_python3');
    return $bin;
}

sub start {
    my ($class, $t, %opt) = @_;
    my $bin = binary() or croak 'no uwsgi_python3';
    my $listen = $opt{listen} or croak 'listen => required';
    my $dir = $class->new_dir($t, 'uwsgi');
    $class->write_files($dir, 'app.py' => $opt{app} // croak 'app => required');
    return $class->spawn($t, dir => $dir, listen => $listen,
        stop_signal => 'INT',    # uWSGI 2.0 reloads on TERM
        argv => [ $bin, '--master', '--processes', 1, '--socket', $listen,
                  '--chmod-socket=666', '--chdir', $dir, '--wsgi-file', "$dir/app.py",
                  '--callable', 'app', @{ $opt{args} // [] } ]);
}

1;
