package Triage::Harness;

# Minimal nginx test harness for nginx-triage (core Perl modules only).
#
# Run the whole suite:      prove -r t/
# Run a single test:        prove -v t/causes_proxy.t     (or: perl t/causes_proxy.t)
# Against another nginx:    TRIAGE_NGINX=/path/sbin/nginx TRIAGE_MODULE=/path/x.so prove -r t/
# Keep temp dirs for debug: TRIAGE_KEEP=1 prove -v t/counters.t   (dirs under t/tmp/)
# Harness self-check on stock nginx: TRIAGE_STOCK=1 prove -v t/causes_proxy.t
#   (%%LOAD_MODULE%% renders empty and log_format_directive() writes "-" for
#   $triage_* fields: statuses and error.log checks pass, module checks fail)
#
# Each harness object owns a prefix dir t/tmp/<test>.<pid>.<n>/ (mode 0755, with
# conf/ and logs/) and at most one nginx master, run in the foreground
# ("daemon off") from a forked child as
#     nginx -p <prefix> -c conf/nginx.conf -e logs/error.log
#
# Config templates are full nginx.conf texts with placeholders:
#     %%PORT_<name>%%   a free 127.0.0.1 port, allocated on first use, stable per name
#     %%PREFIX%%        absolute prefix dir (no trailing slash)
#     %%LOAD_MODULE%%   "load_module <abs path of TRIAGE_MODULE>;" (nothing when TRIAGE_MODULE
#                       is set and empty: a static build)
#     %%<KEY>%%         any KEY => value passed to start()/write_config()/test_config()
# An unknown placeholder is fatal. Unless the template already has them, these
# lines are APPENDED (so config line numbers stay those of the template):
#     daemon off;  pid logs/nginx.pid;  error_log logs/error.log notice;
#
# Everything is bounded in time; all sockets are on 127.0.0.1. Children (nginx,
# backends) are stopped in an END block, also when a test dies.
#
#   my $t = Triage::Harness->new;
#   my $b = $t->backend('silent');                  # Triage::Backend, stopped with $t
#   my $dir = $t->subdir('sock');                   # 0755 dir under the prefix
#   my $lf = log_format_directive('x', qw(request_uri status triage_cause));  # '|'-separated
#   $t->start($conf, BACKEND => $b->addr);          # waits until every listen port answers
#   my $r = $t->http('main', '/path', headers => {X => 1}, method => 'HEAD', timeout => 5);
#   $r->{status}, $r->{headers}{'content-type'}, $r->{body}
#   my $c = $t->conn('main'); $c->request(GET => '/a'); $c->request(GET => '/b');  # keep-alive
#   my $rec = $t->find_access('access.log', \@fields, uri => '/path');   # hashref or undef
#   my $line = $t->wait_error_log(qr/connect\(\) failed/);               # line or undef
#   self_signed_cert($dir, 'good.test');      # $dir/good.test.crt and .key (openssl CLI)
#   cert_chain($dir, 'chain.test', 2);        # a root CA, 2 intermediates, a leaf (see there)
#   $t->reload($new_conf, %vars); $t->worker_pids; $t->stop;
#   my ($rc, $out) = $t->test_config($conf);                             # nginx -t

use strict;
use warnings;

use Carp qw(croak);
use Config ();
use Cwd qw(abs_path);
use Errno qw(EINTR EAGAIN);
use File::Basename qw(basename dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use Exporter 'import';
our @EXPORT_OK = qw(wait_until log_format_directive self_signed_cert cert_chain in_container);

my $T_DIR = abs_path(dirname(__FILE__) . '/../..');    # .../t
my $REPO  = dirname($T_DIR);

our $NGINX  = $ENV{TRIAGE_NGINX}  || "$REPO/nginx-build/out/sbin/nginx";
# TRIAGE_MODULE set and empty: the module is linked into TRIAGE_NGINX (--add-module), no
# load_module (nginx-build/test-addmodule --static)
our $MODULE = $ENV{TRIAGE_MODULE} // "$REPO/nginx-build/out/modules/ngx_http_triage_module.so";

my @ALL;             # live harness objects, for END cleanup
my %USED_PORTS;      # ports handed out by this process
my $SEQ = 0;
my $SWEPT = 0;
my $OWNER_PID = $$;

# Turn INT/TERM into a normal exit so that END blocks clean up children.
$SIG{INT}  = sub { exit 130 } unless ref $SIG{INT};
$SIG{TERM} = sub { exit 143 } unless ref $SIG{TERM};
$SIG{PIPE} = sub { exit 141 } unless ref $SIG{PIPE};    # e.g. `prove -v ... | head`

# --------------------------------------------------------------------------
# generic helpers

# In a freshly forked child: ask the kernel to send $sig when the parent (the
# test process) dies, so nothing outlives a test killed by SIGKILL. Linux only;
# a no-op elsewhere. Survives exec.
my %SYS_PRCTL = (x86_64 => 157, aarch64 => 167, i386 => 172, i686 => 172);
sub die_with_parent {
    my ($sig) = @_;
    my ($arch) = $Config::Config{archname} =~ /^([^-]+)/;
    my $nr = $SYS_PRCTL{$arch} or return;
    my $num = ($sig // 'TERM') eq 'KILL' ? 9 : 15;
    syscall($nr, 1, $num);    # prctl(PR_SET_PDEATHSIG, sig)
}

# wait_until(sub { ... }, timeout) -> the sub's first true value, or undef at the deadline.
sub wait_until {
    my ($cond, $timeout, $step) = @_;
    $timeout //= 5;
    $step    //= 0.02;
    my $deadline = time + $timeout;
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return undef if time >= $deadline;
        sleep $step;
    }
}

# in_container() -> true when this machine is a container (Docker, Podman, Kubernetes, LXC),
# where loopback is the container's own: what an operator would look at (the marker files,
# PID 1's cgroup, Kubernetes' environment). The module says more about a refused loopback
# address there; tests expect what this machine is.
sub in_container {
    return 1 if -e '/.dockerenv' || -e '/run/.containerenv' || $ENV{KUBERNETES_SERVICE_HOST};
    open my $fh, '<', '/proc/1/cgroup' or return 0;
    local $/;
    my $c = <$fh> // '';
    return $c =~ m{docker|kubepods|libpod|containerd|/lxc/} ? 1 : 0;
}

# log_format_directive('triage', qw(uri status triage_cause)) ->
#   "log_format triage '$uri|$status|$triage_cause';"
sub log_format_directive {
    my ($name, @fields) = @_;
    my @v = map { $ENV{TRIAGE_STOCK} && /^triage_/ ? '-' : "\$$_" } @fields;
    return "log_format $name '" . join('|', @v) . "';";
}

# self_signed_cert($dir, $name [, expired => 1]): $dir/$name.crt and $dir/$name.key, an EC
# certificate for CN and subjectAltName DNS:$name, made by the openssl CLI and readable by the
# workers ("nobody"); with expired => 1 it expired a day ago. Dies with openssl's output if it
# fails.
sub self_signed_cert {
    my ($dir, $name, %opt) = @_;
    my @key = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-subj', "/CN=$name", '-addext', "subjectAltName=DNS:$name", '-keyout', "$dir/$name.key");
    my @cmds = $opt{expired}
        # `req -x509` takes no past dates: a request, then signed valid until yesterday
        ? ([ 'openssl', 'req', '-new', @key, '-out', "$dir/$name.csr" ],
           [ 'openssl', 'x509', '-req', '-in', "$dir/$name.csr", '-signkey', "$dir/$name.key",
             '-days', '-1', '-copy_extensions', 'copy', '-out', "$dir/$name.crt" ])
        : ([ 'openssl', 'req', '-x509', @key, '-days', '2', '-out', "$dir/$name.crt" ]);
    for my $cmd (@cmds) {
        system("@$cmd >$dir/openssl.log 2>&1") == 0
            or croak "openssl failed: " . do { local (@ARGV, $/) = ("$dir/openssl.log"); <> };
    }
    chmod 0644, "$dir/$name.key", "$dir/$name.crt";
}

# cert_chain($dir, $name, $intermediates): a certificate chain as CAs issue them, made by the
# openssl CLI (EC keys, valid 2 days): $dir/$name.root.crt (the root CA: what a client
# trusts), $intermediates intermediate CAs, and a leaf for CN and subjectAltName DNS:$name
# signed by the last of them, with its key $dir/$name.key. $dir/$name.chain.crt holds the
# leaf then the intermediates (what a server sends: nginx's ssl_certificate), and
# $dir/$name.leaf.crt the leaf alone (a server configured without its intermediates).
sub cert_chain {
    my ($dir, $name, $intermediates) = @_;
    my $run = sub {
        system("@_ >$dir/openssl.log 2>&1") == 0
            or croak "openssl failed: " . do { local (@ARGV, $/) = ("$dir/openssl.log"); <> };
    };
    my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes');
    open my $ext, '>', "$dir/$name.ca.ext" or croak "$dir/$name.ca.ext: $!";
    print $ext "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
    close $ext;
    open $ext, '>', "$dir/$name.leaf.ext" or croak "$dir/$name.leaf.ext: $!";
    print $ext "basicConstraints=CA:FALSE\nsubjectAltName=DNS:$name\n";
    close $ext;
    my $ca = "$dir/$name.root";
    $run->('openssl', 'req', '-x509', @ec, '-keyout', "$ca.key", '-out', "$ca.crt", '-days', 2,
        '-subj', "/CN=$name-root", '-addext', "'basicConstraints=critical,CA:TRUE'",
        '-addext', "'keyUsage=critical,keyCertSign,cRLSign'");
    my @issued;
    for my $i (1 .. $intermediates + 1) {
        my $leaf = $i > $intermediates;
        my $cert = $leaf ? "$dir/$name" : "$dir/$name.int$i";
        $run->('openssl', 'req', '-new', @ec, '-keyout', "$cert.key", '-out', "$cert.csr",
            '-subj', $leaf ? "/CN=$name" : "/CN=$name-int$i");
        $run->('openssl', 'x509', '-req', '-in', "$cert.csr", '-CA', "$ca.crt", '-CAkey',
            "$ca.key", '-CAcreateserial', '-days', 2, '-out', "$cert.crt", '-extfile',
            $leaf ? "$dir/$name.leaf.ext" : "$dir/$name.ca.ext");
        unshift @issued, "$cert.crt";
        $ca = $cert;
    }
    my $slurp = sub { local (@ARGV, $/) = @_; <> };
    for my $out (["$dir/$name.chain.crt", @issued], ["$dir/$name.leaf.crt", $issued[0]]) {
        my ($file, @parts) = @$out;
        open my $fh, '>', $file or croak "$file: $!";
        print $fh $slurp->($_) for @parts;
        close $fh;
    }
    chmod 0644, glob("$dir/$name.*");
}

# Allocate a free TCP port on 127.0.0.1 (bind to 0, read, close).
sub free_port {
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
            Proto => 'tcp', Listen => 1, ReuseAddr => 0) or croak "bind: $!";
        my $p = $s->sockport;
        close $s;
        next if $USED_PORTS{$p}++;
        return $p;
    }
    croak "could not find a free port";
}

# --------------------------------------------------------------------------
# construction / cleanup

sub new {
    my ($class, %opt) = @_;
    my $name = $opt{name} || basename($0, '.t');
    $name =~ s/[^\w.-]+/_/g;
    _sweep_stale() unless $SWEPT++;
    my $prefix = "$T_DIR/tmp/$name.$$." . $SEQ++;
    remove_tree($prefix) if -e $prefix;
    make_path("$prefix/conf", "$prefix/logs", { mode => 0755 });
    # nginx workers run as "nobody": every dir on the way must be traversable
    chmod 0755, "$T_DIR/tmp", $prefix, "$prefix/conf", "$prefix/logs";
    my $self = bless {
        prefix => $prefix,
        ports  => {},
        pid    => undef,
        nginx  => $opt{nginx}  || $NGINX,
        module => $opt{module} || $MODULE,
        backends => [],
    }, $class;
    push @ALL, $self;
    return $self;
}

# Remove t/tmp/<name>.<pid>.<n> dirs left by test processes that no longer
# exist (killed with SIGKILL). Skipped with TRIAGE_KEEP=1.
sub _sweep_stale {
    return if $ENV{TRIAGE_KEEP};
    opendir my $dh, "$T_DIR/tmp" or return;
    for my $e (readdir $dh) {
        next unless $e =~ /\.(\d+)\.\d+$/ && $1 != $$;
        remove_tree("$T_DIR/tmp/$e") unless kill 0, $1;
    }
}

sub prefix { $_[0]{prefix} }
sub nginx_bin { $_[0]{nginx} }
sub module_path { $_[0]{module} }
sub master_pid { $_[0]{pid} }
sub conf_file { "$_[0]{prefix}/conf/nginx.conf" }
sub error_log_file { "$_[0]{prefix}/logs/error.log" }

# $t->subdir('sock') -> absolute path of a new dir under the prefix, mode 0755
# (traversable by the nginx workers, which run as "nobody").
sub subdir {
    my ($self, $name) = @_;
    my $d = "$self->{prefix}/$name";
    make_path($d, { mode => 0755 });
    chmod 0755, $d;
    return $d;
}

# $t->backend($type, %opt): start a Triage::Backend whose state lives under
# this prefix (backend-<n>/) and which is stopped together with this harness.
sub backend {
    my ($self, $type, %opt) = @_;
    require Triage::Backend;
    $opt{dir} //= "$self->{prefix}/backend-" . scalar @{ $self->{backends} };
    return $self->own(Triage::Backend->start($type, %opt));
}

# Register a Triage::Backend (or anything with ->stop) to be stopped with this harness.
sub own { my ($self, $obj) = @_; push @{ $self->{backends} }, $obj; $obj }

# $t->port('main') -> number; the same name always gives the same port.
sub port {
    my ($self, $name) = @_;
    return $name if $name =~ /^\d+$/;
    return $self->{ports}{$name} //= free_port();
}

# nginx version string from `nginx -v`, e.g. "1.28.3".
sub nginx_version {
    my ($self) = @_;
    return $self->{nginx_version} if $self->{nginx_version};
    my ($rc, $out) = _run([ $self->{nginx}, '-v' ], 10);
    ($self->{nginx_version}) = $out =~ m{nginx/(\d+\.\d+\.\d+)} or croak "nginx -v: $out";
    return $self->{nginx_version};
}

END {
    return unless $$ == $OWNER_PID;
    local $?;    # keep the test's exit status
    for my $t (reverse @ALL) {
        eval { $t->stop(timeout => 3) };
        eval { $_->stop for reverse @{ $t->{backends} } };
        if (!$ENV{TRIAGE_KEEP} && !$t->{keep}) {
            remove_tree($t->{prefix});
        }
    }
}

# --------------------------------------------------------------------------
# configuration

sub render {
    my ($self, $tmpl, %vars) = @_;
    my $out = $tmpl;
    $out =~ s{%%([A-Za-z0-9_]+)%%}{$self->_placeholder($1, \%vars)}ge;
    return $out;
}

sub _placeholder {
    my ($self, $key, $vars) = @_;
    return $self->port($1) if $key =~ /^PORT_(\w+)$/;
    return $self->{prefix} if $key eq 'PREFIX';
    if ($key eq 'LOAD_MODULE') {
        return $ENV{TRIAGE_STOCK} || $self->{module} eq '' ? '' : "load_module $self->{module};";
    }
    return $vars->{$key} if exists $vars->{$key};
    croak "config template: unknown placeholder %%$key%%";
}

# Render, add the harness boilerplate, write conf/nginx.conf. Returns the text.
sub write_config {
    my ($self, $tmpl, %vars) = @_;
    my $conf = $self->render($tmpl, %vars);
    $conf .= "\n" unless $conf =~ /\n\z/;
    $conf .= "daemon off;\n"                       unless $conf =~ /^\s*daemon\s/m;
    $conf .= "pid logs/nginx.pid;\n"               unless $conf =~ /^\s*pid\s/m;
    $conf .= "error_log logs/error.log notice;\n"  unless $conf =~ /^error_log\s/m;
    _write_file($self->conf_file, $conf);
    $self->{conf} = $conf;
    return $conf;
}

# 1-based line number of the first line of the written config matching $re.
sub line_of {
    my ($self, $re) = @_;
    my @l = split /\n/, $self->{conf} // croak "no config written";
    for my $i (0 .. $#l) { return $i + 1 if $l[$i] =~ $re }
    croak "no config line matches $re";
}

# nginx -t: returns (exit code, combined stdout+stderr).
sub test_config {
    my ($self, $tmpl, %vars) = @_;
    $self->write_config($tmpl, %vars) if defined $tmpl;
    return _run([ $self->{nginx}, '-t', '-p', $self->{prefix}, '-c', 'conf/nginx.conf',
                  '-e', 'logs/error.log' ], 15);
}

# --------------------------------------------------------------------------
# process control

# start($template, %vars): write config, fork nginx, wait until every port in a
# "listen" directive accepts TCP connections and the pid file exists (deadline
# 10 s). Dies on failure with the tail of error.log. If a %%PORT_x%% port was
# taken meanwhile (bind: Address already in use), new ports are allocated for
# the template's %%PORT_x%% names and nginx is started again (3 attempts).
sub start {
    my ($self, $tmpl, %vars) = @_;
    croak "nginx already running" if $self->{pid};
    for my $attempt (1 .. 3) {
        my $mark = $self->error_log_mark;
        $self->write_config($tmpl, %vars) if defined $tmpl;
        my $err = $self->_spawn;
        return $self unless $err;
        my $log = $self->error_log_since($mark);
        if (defined $tmpl && $attempt < 3 && $log =~ /Address already in use/) {
            delete $self->{ports}{$_} for $tmpl =~ /%%PORT_(\w+)%%/g;
            next;
        }
        croak "nginx $err:\n" . $self->_tail_logs;
    }
}

sub _spawn {
    my ($self) = @_;
    my $conf = $self->{conf} // croak "no config";
    unlink "$self->{prefix}/logs/nginx.pid";
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        die_with_parent('TERM');
        open STDOUT, '>>', "$self->{prefix}/logs/stderr.log";
        open STDERR, '>&', \*STDOUT;
        { exec $self->{nginx}, '-p', $self->{prefix}, '-c', 'conf/nginx.conf',
            '-e', 'logs/error.log' };
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;

    my @ports;
    while ($conf =~ /^\s*listen\s+(?:127\.0\.0\.1:|\[::1\]:|localhost:)?(\d+)\b/mg) {
        push @ports, $1;
    }
    # every worker forked (a test that compares worker pids later must see them all)
    my $workers = $conf =~ /^\s*master_process\s+off\s*;/m ? 0
        : $conf =~ /^\s*worker_processes\s+(\d+)\s*;/m ? $1 : 1;
    my $ok = wait_until(sub {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) { $self->{pid} = undef; $self->{exit} = $?; return 'exited' }
        for my $p (@ports) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                Proto => 'tcp', Timeout => 1) or return 0;
            close $s;
        }
        # the pid file appears once the master has finished initialisation
        return 0 unless -s "$self->{prefix}/logs/nginx.pid";
        my @w = $self->worker_pids;
        return @w >= $workers ? 'up' : 0;
    }, 10);
    return undef if $ok && $ok eq 'up';
    my $why = !$ok ? 'not ready within 10s' : "exited with status " . ($self->{exit} >> 8);
    $self->stop(timeout => 2) if $self->{pid};
    return $why;
}

# Pids of the master's current children (workers, cache processes).
sub worker_pids {
    my ($self) = @_;
    my $m = $self->{pid} or return ();
    my @pids;
    opendir my $dh, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $st = <$fh> // next;
        # pid (comm) state ppid ...
        next unless $st =~ /\)\s+(\S)\s+(\d+)/;
        push @pids, $p if $2 == $m && $1 ne 'Z';
    }
    return sort { $a <=> $b } @pids;
}

# reload([$template, %vars]): optionally rewrite the config, send HUP, wait
# until the master logged the new workers and all old workers are gone.
# Dies if the reload was rejected (an [emerg] after the HUP).
sub reload {
    my ($self, $tmpl, %vars) = @_;
    my $pid = $self->{pid} or croak "nginx not running";
    $self->write_config($tmpl, %vars) if defined $tmpl;
    my %old = map { $_ => 1 } $self->worker_pids;
    my $mark = $self->error_log_mark;
    kill 'HUP', $pid or croak "kill HUP $pid: $!";
    my $res = wait_until(sub {
        my $new = $self->error_log_since($mark);
        return 'failed' if $new =~ /\[emerg\]/;
        my $started = () = $new =~ /start worker process \d+/g;
        return 0 unless $started;
        my @now = $self->worker_pids;
        return 0 if grep { $old{$_} } @now;
        return 0 if @now < $started;
        return 'ok';
    }, 15);
    croak "reload failed:\n" . $self->error_log_since($mark) if ($res // '') eq 'failed';
    croak "reload not finished within 15s:\n" . $self->error_log_since($mark) unless $res;
    return $self;
}

# stop(timeout => 5, signal => 'QUIT'): graceful stop; TERM then KILL at the deadline.
sub stop {
    my ($self, %opt) = @_;
    my $pid = $self->{pid} or return;
    my $timeout = $opt{timeout} // 5;
    my @workers = $self->worker_pids;
    kill $opt{signal} // 'QUIT', $pid;
    my $done = wait_until(sub { waitpid($pid, WNOHANG) == $pid || !kill(0, $pid) }, $timeout);
    if (!$done) {
        kill 'TERM', $pid;
        $done = wait_until(sub { waitpid($pid, WNOHANG) == $pid || !kill(0, $pid) }, 2);
    }
    if (!$done) {
        kill 'KILL', $pid, @workers;
        waitpid($pid, 0);
    }
    # workers of a killed master would be orphans: make sure none is left
    kill 'KILL', grep { kill 0, $_ } @workers;
    $self->{pid} = undef;
    return 1;
}

# --------------------------------------------------------------------------
# logs

sub _log_path {
    my ($self, $file) = @_;
    return $file if $file =~ m{^/};
    return "$self->{prefix}/logs/$file";
}

sub error_log_mark { -s $_[0]->error_log_file || 0 }

sub error_log_since {
    my ($self, $mark) = @_;
    open my $fh, '<', $self->error_log_file or return '';
    seek $fh, $mark // 0, 0;
    local $/;
    return <$fh> // '';
}

# wait_error_log(qr/re/, timeout => 5, since => $mark) -> first matching line, or undef.
sub wait_error_log {
    my ($self, $re, %opt) = @_;
    return wait_until(sub {
        for my $l (split /\n/, $self->error_log_since($opt{since})) {
            return $l if $l =~ $re;
        }
        return undef;
    }, $opt{timeout} // 5);
}

# All complete lines of a log file (relative names are under logs/).
sub log_lines {
    my ($self, $file) = @_;
    open my $fh, '<', $self->_log_path($file) or return ();
    local $/;
    my $txt = <$fh> // '';
    $txt =~ s/[^\n]*\z//;    # drop a partially written last line
    return split /\n/, $txt;
}

# Parse an access log line of '|'-separated fields. With $fields, returns a
# hashref keyed by field name (the last field takes the rest of the line); a
# value of "-" (nginx's mark for an unset variable) becomes "".
sub parse_access_line {
    my ($line, $fields) = @_;
    return [ split /\|/, $line, -1 ] unless $fields;
    my @v = split /\|/, $line, scalar @$fields;
    my %h;
    @h{@$fields} = map { defined $_ && $_ ne '-' ? $_ : '' } @v;
    return \%h;
}

# wait_access_log($file, $n, fields => [...], timeout => 5) -> arrayref of all
# parsed lines once at least $n exist (or whatever exists at the deadline).
sub wait_access_log {
    my ($self, $file, $n, %opt) = @_;
    wait_until(sub { $self->log_lines($file) >= $n }, $opt{timeout} // 5);
    return [ map { parse_access_line($_, $opt{fields}) } $self->log_lines($file) ];
}

# find_access($file, \@fields, field => value, ...) -> the first parsed line
# whose fields equal the given values, polling up to 5 s; undef if none.
sub find_access {
    my ($self, $file, $fields, %match) = @_;
    my $timeout = delete $match{timeout} // 5;
    return wait_until(sub {
        for my $l ($self->log_lines($file)) {
            my $h = parse_access_line($l, $fields);
            return $h unless grep { ($h->{$_} // '') ne $match{$_} } keys %match;
        }
        return undef;
    }, $timeout);
}

sub _tail_logs {
    my ($self) = @_;
    my $out = '';
    for my $f ('error.log', 'stderr.log') {
        my @l = $self->log_lines($f);
        @l = @l[-20 .. -1] if @l > 20;
        $out .= "--- $f\n" . join("\n", @l) . "\n" if @l;
    }
    return $out;
}

# --------------------------------------------------------------------------
# HTTP client

# http($port_or_name, $path, method => 'GET', headers => {..} or [..],
#      body => '', timeout => 5, host => 'localhost', version => '1.1',
#      local_addr => '127.0.0.2')   (the client's own address, for allow/deny tests)
# One request on a fresh connection ("Connection: close"). Returns a hashref
# { status, reason, headers => {lc name => value}, header_list => [[n, v]...],
#   body, error } -- status is 0 and error is set on timeout / connection errors.
sub http {
    my ($self, $port, $path, %opt) = @_;
    my $c = Triage::Harness::Conn->new($self->port($port), timeout => $opt{timeout},
        local_addr => $opt{local_addr});
    return { status => 0, error => "connect: $!", headers => {}, body => '' } unless $c;
    my %h = (ref $opt{headers} eq 'HASH' ? %{ $opt{headers} } : ());
    my @extra = ref $opt{headers} eq 'ARRAY' ? @{ $opt{headers} } : ();
    $h{Connection} //= 'close';
    my $r = $c->request($opt{method} // 'GET', $path, %opt, headers => [ %h, @extra ]);
    $c->close;
    return $r;
}

# A connection for keep-alive use; see Triage::Harness::Conn.
sub conn {
    my ($self, $port, %opt) = @_;
    return Triage::Harness::Conn->new($self->port($port), %opt);
}

sub _write_file {
    my ($path, $content) = @_;
    open my $fh, '>', $path or croak "$path: $!";
    print $fh $content;
    close $fh or croak "$path: $!";
}

# Run a command with a deadline; returns (exit code, output). -1 on timeout.
sub _run {
    my ($cmd, $timeout) = @_;
    my $out = File::Spec->catfile($T_DIR, 'tmp', "run.$$." . $SEQ++);
    make_path(dirname($out));
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        { exec @$cmd };
        POSIX::_exit(127);
    }
    my $done = wait_until(sub { waitpid($pid, WNOHANG) == $pid }, $timeout);
    my $rc = $done ? $? >> 8 : -1;
    unless ($done) { kill 'KILL', $pid; waitpid($pid, 0) }
    my $text = do { local $/; open my $fh, '<', $out; <$fh> // '' };
    unlink $out;
    return ($rc, $text);
}

# ==========================================================================
package Triage::Harness::Conn;

# A client connection to 127.0.0.1:<port>.
#   my $c = Triage::Harness::Conn->new($port, timeout => 5, local_addr => '127.0.0.2') or die;
#   my $r = $c->request('GET', '/x', headers => [Name => 'v'], body => '...');
#   $c->send_request(...); ...; my $r = $c->read_response(method => 'GET', timeout => 2);
# HTTP/1.1 with "Host: localhost" unless given; keep-alive unless the caller
# sends "Connection: close". Response hash as documented for Harness::http().

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use Errno qw(EINTR EAGAIN);

sub new {
    my ($class, $port, %opt) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => $opt{timeout} // 5,
        ($opt{local_addr} ? (LocalAddr => $opt{local_addr}) : ())) or return undef;
    $s->autoflush(1);
    binmode $s;
    return bless { sock => $s, buf => '', timeout => $opt{timeout} // 5 }, $class;
}

sub sock { $_[0]{sock} }
sub close { my $s = delete $_[0]{sock}; close $s if $s; 1 }

sub send_request {
    my ($self, $method, $path, %opt) = @_;
    my @h = ref $opt{headers} eq 'HASH' ? %{ $opt{headers} } : @{ $opt{headers} // [] };
    my %seen;
    for (my $i = 0; $i < @h; $i += 2) { $seen{ lc $h[$i] } = 1 }
    my $body = $opt{body} // '';
    my $req = "$method $path HTTP/" . ($opt{version} // '1.1') . "\r\n";
    $req .= "Host: " . ($opt{host} // 'localhost') . "\r\n" unless $seen{host};
    $req .= "Content-Length: " . length($body) . "\r\n"
        if length $body && !$seen{'content-length'};
    for (my $i = 0; $i < @h; $i += 2) { $req .= "$h[$i]: $h[$i + 1]\r\n" }
    $req .= "\r\n" . $body;
    my $s = $self->{sock} or return 0;
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($s, $req, length($req) - $off, $off);
        if (!defined $n) { next if $! == EINTR; return 0 }
        $off += $n;
    }
    return 1;
}

sub request {
    my ($self, $method, $path, %opt) = @_;
    $self->send_request($method, $path, %opt)
        or return { status => 0, error => "send: $!", headers => {}, body => '' };
    return $self->read_response(method => $method, timeout => $opt{timeout});
}

# Fill the buffer until $want->() is true, EOF, or the deadline. Returns 'ok', 'eof', 'timeout'.
sub _fill {
    my ($self, $want, $deadline) = @_;
    my $s = $self->{sock} or return 'eof';
    my $sel = IO::Select->new($s);
    while (!$want->()) {
        my $left = $deadline - time;
        return 'timeout' if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($s, $self->{buf}, 65536, length $self->{buf});
        if (!defined $n) { next if $! == EINTR || $! == EAGAIN; return 'eof' }
        return 'eof' if $n == 0;
    }
    return 'ok';
}

sub read_response {
    my ($self, %opt) = @_;
    my $deadline = time + ($opt{timeout} // $self->{timeout});
    my %r = (status => 0, headers => {}, header_list => [], body => '');
    my $st = $self->_fill(sub { $self->{buf} =~ /\r?\n\r?\n/ }, $deadline);
    if ($st ne 'ok') { $r{error} = "header: $st"; $r{raw} = $self->{buf}; return \%r }
    $self->{buf} =~ s/\A(.*?)\r?\n\r?\n//s;
    my ($sl, @lines) = split /\r?\n/, $1;
    @r{qw(version status reason)} = $sl =~ m{^HTTP/(\d\.\d) (\d{3}) ?(.*)$}
        or do { $r{status} = 0; $r{error} = "bad status line: $sl"; return \%r };
    for (@lines) {
        my ($n, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $r{header_list} }, [ $n, $v ];
        my $k = lc $n;
        $r{headers}{$k} = exists $r{headers}{$k} ? "$r{headers}{$k}, $v" : $v;
    }
    my $h = $r{headers};
    my $no_body = ($opt{method} // '') eq 'HEAD' || $r{status} =~ /^(1..|204|304)$/;
    if ($no_body) {
        # nothing
    } elsif (($h->{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            $st = $self->_fill(sub { $self->{buf} =~ /\r\n/ }, $deadline);
            last if $st ne 'ok';
            $self->{buf} =~ s/\A([0-9a-fA-F]+)[^\r]*\r\n//
                or do { $r{error} = 'bad chunk'; last };
            my $len = hex $1;
            $st = $self->_fill(sub { length $self->{buf} >= $len + 2 }, $deadline);
            last if $st ne 'ok';
            $r{body} .= substr($self->{buf}, 0, $len);
            substr($self->{buf}, 0, $len + 2) = '';
            if ($len == 0) {    # trailers (none expected) end with CRLF
                last;
            }
        }
        $r{error} = "body: $st" if $st ne 'ok';
    } elsif (defined $h->{'content-length'}) {
        my $len = $h->{'content-length'};
        $st = $self->_fill(sub { length $self->{buf} >= $len }, $deadline);
        $r{body} = substr($self->{buf}, 0, $len, '');
        $r{error} = "body: $st" if $st ne 'ok';
    } else {
        $st = $self->_fill(sub { 0 }, $deadline);
        $r{body} = $self->{buf};
        $self->{buf} = '';
        $r{error} = 'body: timeout' if $st eq 'timeout';
    }
    return \%r;
}

1;
