package Triage::PhpFpm;

# A real php-fpm master for tests (Debian's php-fpm package; .ci/run installs it), in the
# foreground, under the harness's prefix, listening on loopback or a unix socket. Core Perl.
#
#   my $bin = Triage::PhpFpm::binary() or plan skip_all => '...';
#   my $fpm = Triage::PhpFpm->start($t, listen => "127.0.0.1:$port",   # or a socket path
#                                   pool => "ping.path = /ping\n");     # extra pool lines
#   $fpm->stop;          # graceful (SIGQUIT); also done with the harness ($t->own)
#   my $www = Triage::PhpFpm::scripts($t, 'ok.php' => '<?php echo "ok";');  # PHP files
#   $fpm->kill9;         # SIGKILL to the master and its workers: the socket file stays
#
# The pool is static with one child; ping.path / pm.status_path and the like come from the
# `pool` lines. As root it runs with -R (no `user`: the children run as root too).

use strict;
use warnings;

use Carp qw(croak);
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw(WNOHANG);
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(time sleep);
use Triage::Harness qw(wait_until);

# The php-fpm binary, or undef when none is installed.
sub binary {
    return $ENV{TRIAGE_PHP_FPM} if $ENV{TRIAGE_PHP_FPM};
    my ($bin) = sort { $b cmp $a } grep { -x } glob('/usr/sbin/php-fpm*');
    return $bin;
}

# Write PHP scripts (name => source) into the harness's www/ directory; returns its path.
sub scripts {
    my ($t, %script) = @_;
    my $www = $t->subdir('www');
    for my $f (sort keys %script) {
        open my $fh, '>', "$www/$f" or croak "$www/$f: $!";
        print $fh $script{$f};
        close $fh;
    }
    return $www;
}

sub start {
    my ($class, $t, %opt) = @_;
    my $bin = binary() or croak 'no php-fpm binary';
    my $listen = $opt{listen} or croak 'listen => required';
    my $dir = $t->subdir('php-fpm-' . ++$Triage::PhpFpm::SEQ);
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
    my $self = bless { dir => $dir, listen => $listen }, $class;
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        Triage::Harness::die_with_parent('TERM');
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/stdout.log";
        open STDERR, '>&', \*STDOUT;
        exec $bin, '-F', ($> == 0 ? '-R' : ()), '-y', $conf, '-p', $dir;
        exit 127;
    }
    $self->{pid} = $pid;
    $t->own($self);
    my $up = wait_until(sub {
        return 0 if waitpid($pid, WNOHANG) == $pid;
        my $s = $listen =~ m{^/}
            ? IO::Socket::UNIX->new(Peer => $listen, Type => SOCK_STREAM)
            : IO::Socket::INET->new(PeerAddr => $listen, Timeout => 1);
        return $s ? 1 : 0;
    }, 10, 0.02);
    croak "php-fpm did not listen on $listen: " . $self->log unless $up;
    return $self;
}

sub dir { $_[0]{dir} }
sub pid { $_[0]{pid} }

# What php-fpm wrote to its error log and stdout.
sub log {
    my ($self) = @_;
    my $text = '';
    for my $f ("$self->{dir}/php-fpm.log", "$self->{dir}/stdout.log") {
        open my $fh, '<', $f or next;
        local $/;
        $text .= <$fh> // '';
    }
    return $text;
}

# SIGKILL the master and its workers at once (the OOM killer, `kill -9` of the group): nothing
# removes a unix socket file. (Killing the master alone leaves its workers serving.)
sub kill9 {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    my @workers;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my ($ppid) = (<$fh> // '') =~ /\) \S+ (\d+)/ or next;
        push @workers, $stat =~ m{^/proc/(\d+)/} if $ppid == $pid;
    }
    kill 'KILL', $pid, @workers;
    waitpid($pid, 0);
    wait_until(sub { !grep { kill 0, $_ } @workers }, 5, 0.01);
    return 1;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'QUIT', $pid;    # graceful: php-fpm removes its socket
    my $deadline = time + 5;
    while (waitpid($pid, WNOHANG) != $pid) {
        if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
        sleep 0.01;
    }
    return 1;
}

1;
