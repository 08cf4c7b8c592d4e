package Triage::AppServer;

# A real application server for tests (php-fpm, gunicorn: see Triage::PhpFpm and
# Triage::Gunicorn, which say how to start each), its master in the foreground under the
# harness's prefix, listening on loopback or a unix socket. Core Perl only.
#
#   my $s = Triage::X->start($t, listen => "127.0.0.1:$port", ...);  # or a socket path
#   $s->pid; $s->dir; $s->log;   # master pid, its directory, what it logged
#   $s->stop;                    # graceful; also done with the harness ($t->own)
#   $s->kill9;                   # SIGKILL to the master and its workers: a socket file stays
#   Triage::AppServer->write_files($dir, 'app.py' => $source);  # files for it to serve

use strict;
use warnings;

use Carp qw(croak);
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw(WNOHANG);
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(time sleep);
use Triage::Harness qw(wait_until);

my %SEQ;

# A directory of its own under the harness's prefix, for a server of this kind.
sub new_dir {
    my ($class, $t, $kind) = @_;
    return $t->subdir("$kind-" . ++$SEQ{$kind});
}

# Write files (name => content) into $dir; returns $dir.
sub write_files {
    my ($class, $dir, %file) = @_;
    for my $f (sort keys %file) {
        open my $fh, '>', "$dir/$f" or croak "$dir/$f: $!";
        print $fh $file{$f};
        close $fh;
    }
    return $dir;
}

# spawn($t, dir => $dir, argv => [...], listen => $addr_or_path, logs => [files],
#       stop_signal => 'QUIT'): exec argv (stdout and stderr to dir/stdout.log), wait until
# something accepts on `listen` (10 s), register with the harness.
sub spawn {
    my ($class, $t, %o) = @_;
    my ($dir, $listen) = @o{qw(dir listen)};
    my $self = bless { %o, logs => [ @{ $o{logs} // [] }, "$dir/stdout.log" ] }, $class;
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        Triage::Harness::die_with_parent('TERM');
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/stdout.log";
        open STDERR, '>&', \*STDOUT;
        exec @{ $o{argv} };
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
    croak "$o{argv}[0] did not listen on $listen: " . $self->log unless $up;
    return $self;
}

sub dir { $_[0]{dir} }
sub pid { $_[0]{pid} }

# What the server wrote to its logs and stdout.
sub log {
    my ($self) = @_;
    my $text = '';
    for my $f (@{ $self->{logs} }) {
        open my $fh, '<', $f or next;
        local $/;
        $text .= <$fh> // '';
    }
    return $text;
}

# SIGKILL the master and its workers at once (the OOM killer, `kill -9` of the group): nothing
# removes a unix socket file. (Killing a master alone can leave its workers serving.)
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

# Graceful stop (the server's own signal for it: it removes its unix socket).
sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill $self->{stop_signal} // 'TERM', $pid;
    my $deadline = time + 5;
    while (waitpid($pid, WNOHANG) != $pid) {
        if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
        sleep 0.01;
    }
    return 1;
}

1;
