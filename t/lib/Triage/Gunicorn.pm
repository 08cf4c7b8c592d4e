package Triage::Gunicorn;

# A real gunicorn for tests (Debian's gunicorn package; .ci/run installs it): one sync
# worker serving a WSGI app given as Python source, in the foreground, under the harness's
# prefix (Triage::AppServer).
#
#   my $bin = Triage::Gunicorn::binary() or plan skip_all => '...';
#   my $g = Triage::Gunicorn->start($t, listen => "127.0.0.1:$port",   # or a socket path
#                                   app => $python, args => ['--timeout', 6]);
#   $g->stop; $g->kill9;   # see Triage::AppServer

use strict;
use warnings;

use Carp qw(croak);
use parent 'Triage::AppServer';

# The gunicorn launcher, or undef when none is installed.
sub binary {
    return $ENV{TRIAGE_GUNICORN} if $ENV{TRIAGE_GUNICORN};
    my ($bin) = grep { -x } ('/usr/bin/gunicorn', '/usr/bin/gunicorn3');
    return $bin;
}

sub start {
    my ($class, $t, %opt) = @_;
    my $bin = binary() or croak 'no gunicorn';
    my $listen = $opt{listen} or croak 'listen => required';
    my $dir = $class->new_dir($t, 'gunicorn');
    $class->write_files($dir, 'app.py' => $opt{app} // croak 'app => required');
    my $bind = $listen =~ m{^/} ? "unix:$listen" : $listen;
    return $class->spawn($t, dir => $dir, listen => $listen, stop_signal => 'TERM',
        argv => [ $bin, '--chdir', $dir, '--workers', 1, '--bind', $bind,
                  @{ $opt{args} // [] }, 'app:app' ]);
}

1;
