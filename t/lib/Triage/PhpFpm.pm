package Triage::PhpFpm;

# A real php-fpm master for tests (Debian's php-fpm package; .ci/run installs it): a static
# pool with one worker, in the foreground, under the harness's prefix (Triage::AppServer).
#
#   my $bin = Triage::PhpFpm::binary() or plan skip_all => '...';
#   my $www = Triage::PhpFpm::scripts($t, 'ok.php' => '<?php echo "ok";');  # PHP files
#   my $fpm = Triage::PhpFpm->start($t, listen => "127.0.0.1:$port",   # or a socket path
#                                   pool => "ping.path = /ping\n");     # extra pool lines
#   $fpm->stop; $fpm->kill9;   # see Triage::AppServer
#
# As root it runs with -R (no `user`: the workers run as root too).

use strict;
use warnings;

use Carp qw(croak);
use parent 'Triage::AppServer';

# The php-fpm binary, or undef when none is installed.
sub binary {
    return $ENV{TRIAGE_PHP_FPM} if $ENV{TRIAGE_PHP_FPM};
    my ($bin) = sort { $b cmp $a } grep { -x } glob('/usr/sbin/php-fpm*');
    return $bin;
}

# Write PHP scripts (name => source) into the harness's www/ directory; returns its path.
sub scripts {
    my ($t, %script) = @_;
    return __PACKAGE__->write_files($t->subdir('www'), %script);
}

sub start {
    my ($class, $t, %opt) = @_;
    my $bin = binary() or croak 'no php-fpm binary';
    my $listen = $opt{listen} or croak 'listen => required';
    my $dir = $class->new_dir($t, 'php-fpm');
    my $conf = "$dir/php-fpm.conf";
    open my $fh, '>', $conf or croak "$conf: $!";
    print $fh <<"CONF";
[global]
error_log = $dir/php-fpm.log
daemonize = no
pid = $dir/php-fpm.pid

[test]
listen = $listen
listen.mode = 0666
pm = static
pm.max_children = 1
catch_workers_output = yes
CONF
    print $fh $opt{pool} // '';
    close $fh;
    return $class->spawn($t, dir => $dir, listen => $listen, logs => ["$dir/php-fpm.log"],
        stop_signal => 'QUIT',    # graceful: php-fpm removes its socket
        argv => [ $bin, '-F', ($> == 0 ? '-R' : ()), '-y', $conf, '-p', $dir ]);
}

1;
