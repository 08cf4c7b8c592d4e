package Triage::Backend;

# Upstream peers that misbehave for real, each in its own forked process,
# listening on 127.0.0.1 (or a unix socket). Core Perl only.
#
#   my $b = Triage::Backend->start('silent');            # or $t->backend('silent') (see Harness)
#   $b->port; $b->addr;        # 41234; "127.0.0.1:41234" (or "unix:/path")
#   $b->count;                 # requests the backend has read so far
#   $b->requests;              # their first lines ("GET /x HTTP/1.0", or "raw <n bytes>")
#   $b->connections;           # connections accepted so far
#   $b->stop;                  # also done automatically in END
#   $b->set_health(503);       # type ok: requests for /health* now get this status
#                              # (undef: 200 again); other paths keep getting 200
#   my $port = Triage::Backend::closed_port();   # nothing listens there
#
# Types (all read the whole request first; "protocol => 'raw'" treats a burst of
# bytes followed by 100 ms of silence as one request, for fastcgi/uwsgi/scgi/grpc/TLS):
#   ok             200 with body (opt body => '...'), HTTP/1.1 keep-alive capable
#   silent         never answers, keeps the connection open
#   close          closes the connection (FIN) without answering
#   reset          closes with SO_LINGER {1,0}: sends RST
#   invalid_header valid status line, then the header line "X-Bad Header: 1"
#   big_header     a 64 KB header line (more than any proxy_buffer_size)
#   bad_gateway    the backend's own "502 Bad Gateway" with a body
#   cut_body       "200 OK" with Content-Length 1000, then 100 bytes and FIN (opt status => 502)
#   plain          answers "HTTP/1.1 400" to anything and closes (for proxy_pass https://)
#   custom         opt respond => $bytes, then => 'close' | 'keep' | 'reset'
#   greeting       speaks first: writes opt respond => $bytes as it accepts a connection,
#                  before reading anything, then => 'keep' (default: then reads and ignores
#                  what comes) | 'close' | 'reset' (a banner: MySQL's handshake, SSH, SMTP)
#   keepalive_race answers a connection's first request (200, keep-alive) and closes it when
#                  a second one arrives, unanswered (opt then => 'reset' for RST): a backend
#                  whose idle timeout ran out just as nginx reused the connection
#   drip           writes opt respond => $bytes one byte every opt every => 0.2 s, for at
#                  most opt for => 3 s, then closes (a slow peer; serves one at a time)
#   blackhole      listen backlog 0, accept queue pre-filled, never accepts: connects time out
#                  (with unix => $path: connects fail at once, "11: Resource temporarily
#                  unavailable", as php-fpm's socket does when its backlog is full)
#   tls_only       a TLS server (openssl s_server, opt cert => and key => files) that
#                  closes a connection without a byte when it gets plain HTTP, as OpenSSL
#                  and Node.js servers do
#   fastcgi_only   reads the 8 bytes of a FastCGI record header and closes, the rest of the
#                  request unread (so the kernel sends RST): php-fpm given plain HTTP
#   dns_nxdomain   UDP DNS server answering NXDOMAIN to every query
#   dns            UDP DNS server answering A queries for the names of opt answers =>
#                  { 'app.test' => ['127.0.0.1', '127.0.0.2'] } (TTL 1 s), which
#                  $b->set_answers(name => [addresses]) changes while it runs; other
#                  types of a known name get no records, unknown names NXDOMAIN
#   fuzz           answers each request with an HTTP response picked from a set of valid,
#                  odd and broken ones (a backend's own 502, chunked, cut, 1xx, huge or
#                  invalid headers, garbage, nothing) with up to 3 random byte edits, then
#                  keeps, closes (FIN) or resets the connection; opt seed => N (the
#                  sequence is the same for the same seed and order of requests)
# Options: host => '127.0.0.3' or '::1' and port => N (TCP types: listen there instead of
# 127.0.0.1 and a free port; loopback only; addr is then "[::1]:N"), unix => $path (listen on a unix socket instead; its dir must be
# traversable by "nobody"), mode => 0000 (chmod of the socket, default 0666), dir => $dir (state files; default a dir under t/tmp), protocol => 'raw',
# delay => $seconds (wait that long after each request before acting on it: a backend killed
# by its own request timeout is type 'close' with a delay; it serves one request at a time then).

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw(WNOHANG);
use Socket qw(:all);
use Time::HiRes qw(time sleep);
use Errno qw(EINTR EAGAIN EINPROGRESS);
use Triage::Harness ();

my $T_DIR = abs_path(dirname(__FILE__) . '/../..');
my $OWNER_PID = $$;
my @ALL;
my $SEQ = 0;

my %RAW_DEFAULT = (plain => 1);

# A port where nothing listens, from the harness's list of ports handed out: nginx's own
# %%PORT_x%% ports come from that list too, so a "closed" port never becomes one of them
# (it did once: a test's refused upstream was nginx itself, proxying to itself in a loop).
sub closed_port {
    require Triage::Harness;
    return Triage::Harness::free_port();
}

sub start {
    my ($class, $type, %opt) = @_;
    my $dir = $opt{dir};
    my $own_dir = 0;
    unless ($dir) {
        $dir = "$T_DIR/tmp/backend.$$." . $SEQ++;
        $own_dir = 1;
    }
    make_path($dir, { mode => 0755 });
    chmod 0755, $dir;
    my $self = bless { %opt, type => $type, dir => $dir, own_dir => $own_dir,
                       events => "$dir/events" }, $class;
    open my $fh, '>', $self->{events} or croak "$self->{events}: $!";
    close $fh;

    my $sock;
    if ($type eq 'dns_nxdomain' || $type eq 'dns') {
        $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
            Proto => 'udp') or croak "udp bind: $!";
        $self->{port} = $sock->sockport;
    } elsif ($type eq 'blackhole' && defined $opt{unix}) {
        $sock = $self->_blackhole_unix($opt{unix});
    } elsif ($type eq 'blackhole') {
        $sock = $self->_blackhole;
    } elsif (defined $opt{unix}) {
        unlink $opt{unix};
        $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $opt{unix},
            Listen => 128) or croak "unix bind $opt{unix}: $!";
        # default 0666: nginx workers run as "nobody" and need write permission
        chmod $opt{mode} // 0666, $opt{unix};
    } elsif ($self->host =~ /:/) {
        # IPv6 (IO::Socket::IP: core Perl since 5.20)
        require IO::Socket::IP;
        $sock = IO::Socket::IP->new(LocalHost => $self->host, LocalPort => $opt{port} // 0,
            Proto => 'tcp', Listen => 128, ReuseAddr => 1) or croak "bind [$self->{host}]: $@";
        $self->{port} = $sock->sockport;
    } else {
        $sock = IO::Socket::INET->new(LocalAddr => $self->host, LocalPort => $opt{port} // 0,
            Proto => 'tcp', Listen => 128, ReuseAddr => 1) or croak "bind: $!";
        $self->{port} = $sock->sockport;
    }

    $self->set_answers(%{ $opt{answers} }) if $type eq 'dns';

    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        Triage::Harness::die_with_parent('KILL');
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        $SIG{PIPE} = 'IGNORE';
        if ($type eq 'tls_only') {
            # the port was held until now; openssl binds it again (SO_REUSEADDR)
            close $sock;
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', "$dir/openssl.log";
            open STDERR, '>&', \*STDOUT;
            { exec 'openssl', 's_server', '-quiet', '-accept', $self->host . ":$self->{port}",
                '-cert', $opt{cert}, '-key', $opt{key} };
            POSIX::_exit(127);
        }
        eval {
            if ($type eq 'dns_nxdomain' || $type eq 'dns') { $self->_dns($sock) }
            elsif ($type eq 'blackhole') { sleep 1 while 1 }
            else { $self->_serve($sock) }
        };
        $self->_event("error $@") if $@;
        POSIX::_exit(0);
    }
    $self->{pid} = $pid;
    close $sock;
    close $_ for @{ delete $self->{held} // [] };
    push @ALL, $self;
    if ($type eq 'tls_only') {
        Triage::Harness::wait_until(sub {
            IO::Socket::INET->new(PeerAddr => $self->host, PeerPort => $self->{port}, Proto => 'tcp')
        }, 10) or croak "openssl s_server did not listen on port $self->{port}: "
            . do { local (@ARGV, $/) = ("$dir/openssl.log"); <> // '' };
    }
    return $self;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub host { $_[0]{host} // '127.0.0.1' }
sub addr {
    my ($self) = @_;
    return "unix:$self->{unix}" if defined $self->{unix};
    my $h = $self->host;
    return ($h =~ /:/ ? "[$h]" : $h) . ":$self->{port}";
}

sub _events {
    my ($self) = @_;
    open my $fh, '<', $self->{events} or return ();
    return map { chomp; $_ } <$fh>;
}
sub requests    { map { /^request (.*)/ ? $1 : () } $_[0]->_events }
sub count       { scalar(my @r = $_[0]->requests) }
sub connections { scalar grep { /^accept/ } $_[0]->_events }
sub queries     { map { /^query (.*)/ ? $1 : () } $_[0]->_events }

sub set_health {
    my ($self, $code) = @_;
    my $f = "$self->{dir}/health";
    if (!defined $code) { unlink $f; return 1 }
    open my $fh, '>', "$f.tmp" or croak "$f: $!";
    print $fh "$code\n";
    close $fh;
    rename "$f.tmp", $f or croak "rename $f: $!";
    return 1;
}

# type dns: what the server answers from now on (name => [addresses], for every name).
sub set_answers {
    my ($self, %answers) = @_;
    my $f = "$self->{dir}/answers";
    open my $fh, '>', "$f.tmp" or croak "$f: $!";
    print $fh join(' ', lc $_, @{ $answers{$_} }), "\n" for sort keys %answers;
    close $fh;
    rename "$f.tmp", $f or croak "rename $f: $!";
    return 1;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    my $deadline = time + 3;
    while (waitpid($pid, WNOHANG) != $pid) {
        if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
        sleep 0.01;
    }
    unlink $self->{unix} if defined $self->{unix};
    remove_tree($self->{dir}) if $self->{own_dir} && !$ENV{TRIAGE_KEEP};
    return 1;
}

END {
    return unless $$ == $OWNER_PID;
    local $?;
    $_->stop for reverse @ALL;
}

# --------------------------------------------------------------------------
# child side

sub _event {
    my ($self, $line) = @_;
    open my $fh, '>>', $self->{events} or return;
    syswrite $fh, "$line\n";
    close $fh;
}

sub _write_all {
    my ($sock, $data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($sock, $data, length($data) - $off, $off);
        if (!defined $n) { next if $! == EINTR || $! == EAGAIN; return 0 }
        $off += $n;
    }
    return 1;
}

# Listener with backlog 0 whose accept queue is filled with our own client
# connections (kept open in the backend process): further SYNs are dropped.
sub _blackhole {
    my ($self) = @_;
    socket(my $l, PF_INET, SOCK_STREAM, 0) or croak "socket: $!";
    bind($l, pack_sockaddr_in(0, inet_aton('127.0.0.1'))) or croak "bind: $!";
    listen($l, 0) or croak "listen: $!";
    my ($port) = unpack_sockaddr_in(getsockname($l));
    $self->{port} = $port;
    my @held;
    for my $i (1 .. 16) {
        socket(my $c, PF_INET, SOCK_STREAM, 0) or croak "socket: $!";
        IO::Handle::blocking($c, 0);
        connect($c, pack_sockaddr_in($port, inet_aton('127.0.0.1')));
        push @held, $c;
        # established within 200 ms? then the queue still had room
        my $w = '';
        vec($w, fileno $c, 1) = 1;
        my $n = select(undef, $w, undef, 0.2);
        my $done = $n > 0 && !unpack('i', getsockopt($c, SOL_SOCKET, SO_ERROR));
        last unless $done;
    }
    $self->{held} = \@held;
    $self->{filled} = scalar @held;
    return $l;
}

# The same on a unix socket: there a full queue refuses a connect() at once (EAGAIN).
sub _blackhole_unix {
    my ($self, $path) = @_;
    unlink $path;
    socket(my $l, PF_UNIX, SOCK_STREAM, 0) or croak "socket: $!";
    bind($l, pack_sockaddr_un($path)) or croak "bind $path: $!";
    listen($l, 0) or croak "listen: $!";
    chmod 0666, $path;
    my @held;
    for my $i (1 .. 16) {
        socket(my $c, PF_UNIX, SOCK_STREAM, 0) or croak "socket: $!";
        IO::Handle::blocking($c, 0);
        if (connect($c, pack_sockaddr_un($path))) {
            push @held, $c;
            next;
        }
        croak "connect $path: $!" unless $! == EAGAIN;
        last;    # the queue is full
    }
    croak "unix blackhole $path: the queue never filled" unless @held && @held < 16;
    $self->{held} = \@held;
    $self->{filled} = scalar @held;
    return $l;
}

# The responses the fuzz backend starts from.
my @FUZZ = (
    "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\n\r\nhello",
    "HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "HTTP/1.0 502\r\n\r\nbody until close",
    "HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 502 X\r\nX-Bad Header: 1\r\n\r\n",
    "HTTP/1.1 502 X\r\nX: " . ('a' x 70000) . "\r\n\r\n",
    "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 502 Bad\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 502 Bad\r\nContent-Length: 99999999999999999999\r\n\r\nx",
    "HTTP/1.1 502 Bad\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "HTTP/1.1 502 Bad\r\nLocation: \x00\x01\r\n\r\n",
    "garbage\r\n\r\n",
    "",
);

# Up to 3 random edits of $b: a byte replaced, bytes deleted, bytes inserted, cut short.
sub _mutate {
    my ($b) = @_;
    for (1 .. int rand 4) {
        last unless length $b;
        my $i = int rand length $b;
        my $op = rand;
        if    ($op < 0.3) { substr($b, $i, 1) = chr int rand 256 }
        elsif ($op < 0.5) { substr($b, $i, 1 + int rand 10) = '' }
        elsif ($op < 0.7) { substr($b, $i, 0) = join '', map { chr int rand 256 } 0 .. int rand 8 }
        else              { $b = substr($b, 0, $i) }
    }
    return $b;
}

sub _respond_bytes {
    my ($self) = @_;
    my $t = $self->{type};
    if ($t eq 'invalid_header') {
        return ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Bad Header: 1\r\n"
              . "Content-Length: 2\r\n\r\nok", 'keep');
    }
    if ($t eq 'big_header') {
        return ("HTTP/1.1 200 OK\r\nX-Big: " . ('a' x 65536) . "\r\nContent-Length: 2\r\n\r\nok",
                'keep');
    }
    if ($t eq 'bad_gateway') {
        my $b = $self->{body} // "backend's own 502\n";
        return ("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: "
              . length($b) . "\r\nConnection: close\r\n\r\n$b", 'close');
    }
    if ($t eq 'cut_body') {
        my $st = $self->{status} // 200;
        my $reason = $st == 200 ? 'OK' : $st == 502 ? 'Bad Gateway' : 'Status';
        return ("HTTP/1.1 $st $reason\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
              . ('x' x 100), 'close');
    }
    if ($t eq 'plain') {
        return ("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                'close');
    }
    if ($t eq 'custom') {
        return ($self->{respond} // '', $self->{then} // 'close');
    }
    if ($t eq 'fuzz') {
        return (_mutate($FUZZ[int rand @FUZZ]), (qw(keep close reset))[int rand 3]);
    }
    croak "unknown backend type $t";
}

# Select loop over the listener and its connections.
sub _serve {
    my ($self, $l) = @_;
    srand($self->{seed}) if defined $self->{seed};
    my $raw = $self->{protocol} ? $self->{protocol} eq 'raw' : $RAW_DEFAULT{ $self->{type} };
    my $sel = IO::Select->new($l);
    my %st;    # fileno => { sock, buf, last, silent }
    # remove a connection from the loop, then close it: FIN, or RST if $how eq 'reset'
    my $drop = sub {
        my ($s, $how) = @_;
        $sel->remove($s);
        delete $st{ fileno $s };
        if (($how // '') eq 'reset') { _rst($s) } else { close $s }
    };
    while (1) {
        my $pending = grep { length $_->{buf} && !$_->{silent} } values %st;
        my @ready = $sel->can_read($raw && $pending ? 0.02 : 1);
        for my $s (@ready) {
            if ($s == $l) {
                my $c = $l->accept or next;
                $c->autoflush(1);
                $sel->add($c);
                $st{ fileno $c } = { sock => $c, buf => '', last => time };
                $self->_event('accept');
                if ($self->{type} eq 'greeting') {
                    _write_all($c, $self->{respond} // '');
                    my $then = $self->{then} // 'keep';
                    if ($then eq 'keep') { $st{ fileno $c }{silent} = 1 }
                    else { $drop->($c, $then) }
                }
                next;
            }
            my $c = $st{ fileno $s } or next;
            if ($self->{type} eq 'fastcgi_only') {
                # php-fpm reads a record header, finds no FastCGI there, and closes: the rest
                # of the request unread, the kernel resets the connection
                sysread($s, my $header, 8);
                $self->_event('request raw 8');
                $drop->($s);
                next;
            }
            my $n = sysread($s, $c->{buf}, 65536, length $c->{buf});
            if (!defined $n) { next if $! == EINTR || $! == EAGAIN; $drop->($s); next }
            if ($n == 0) { $drop->($s); next }
            $c->{last} = time;
            if ($c->{silent}) { $c->{buf} = ''; next }
            next if $raw;
            # HTTP: handle every complete request in the buffer
            while ($c->{buf} =~ /\r\n\r\n/) {
                my $hend = $+[0];
                my $head = substr($c->{buf}, 0, $hend);
                my ($cl) = $head =~ /^content-length:\s*(\d+)/mi;
                $cl //= 0;
                last if length($c->{buf}) < $hend + $cl;
                my $req = substr($c->{buf}, 0, $hend + $cl, '');
                my $act = $self->_handle($c, $req);
                if ($act ne 'keep') { $drop->($s, $act); last }
                last if $c->{silent};
            }
        }
        next unless $raw;
        for my $c (values %st) {
            next if $c->{silent} || !length $c->{buf} || time - $c->{last} < 0.1;
            my $req = $c->{buf};
            $c->{buf} = '';
            my $act = $self->_handle($c, $req);
            $drop->($c->{sock}, $act) if $act ne 'keep';
        }
    }
}

# Act on one complete request. Returns 'keep' (leave the connection open),
# 'close' (close it: FIN) or 'reset' (close it with RST); the caller closes.
sub _handle {
    my ($self, $c, $req) = @_;
    my $s = $c->{sock};
    my ($first) = $req =~ /\A([^\r\n]*)/;
    $first = 'raw ' . length($req) if $first !~ m{^[A-Z]+ \S+ HTTP/\d};
    $self->_event("request $first");
    my $t = $self->{type};
    # a slow backend: it takes the request, works on it, then acts (e.g. killed by its timeout)
    sleep($self->{delay}) if $self->{delay};

    if ($t eq 'silent') { $c->{silent} = 1; return 'keep' }
    if ($t eq 'keepalive_race') {
        return $self->{then} // 'close' if $c->{served}++;
        _write_all($s, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n");
        return 'keep';
    }
    if ($t eq 'close')  { shutdown($s, 1); return 'close' }
    if ($t eq 'reset')  { return 'reset' }
    if ($t eq 'ok') {
        my $body = $self->{body} // "ok\n";
        my ($v) = $req =~ m{\A\S+ \S+ HTTP/(\d\.\d)};
        my $code = 200;
        if ($req =~ m{\A\S+ /health} && open my $hf, '<', "$self->{dir}/health") {
            $code = (<$hf> // '') =~ /^(\d{3})/ ? $1 : 200;
        }
        my $close = $req =~ /^connection:\s*close/mi
            || (($v // '1.0') eq '1.0' && $req !~ /^connection:\s*keep-alive/mi);
        _write_all($s, "HTTP/1.1 $code " . ($code == 200 ? 'OK' : 'Status')
            . "\r\nContent-Type: text/plain\r\nContent-Length: "
            . length($body) . "\r\nX-Backend-Count: " . $self->count
            . "\r\nConnection: " . ($close ? 'close' : 'keep-alive') . "\r\n\r\n"
            . ($req =~ /\AHEAD / ? '' : $body));
        return $close ? 'close' : 'keep';
    }
    if ($t eq 'drip') {
        my $bytes = $self->{respond} // "HTTP/1.1 200 OK\r\n" . ("X-Drip: 1\r\n" x 100);
        my $until = time + ($self->{for} // 3);
        for my $i (0 .. length($bytes) - 1) {
            last if time > $until;
            _write_all($s, substr($bytes, $i, 1)) or last;
            sleep($self->{every} // 0.2);
        }
        return 'close';
    }
    my ($bytes, $then) = $self->_respond_bytes;
    _write_all($s, $bytes);
    return $then if $then eq 'reset' || $then eq 'close';
    $c->{silent} = 1;    # 'keep': leave it open, ignore further input
    return 'keep';
}

sub _rst {
    my ($s) = @_;
    setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $s;
}

# The answers file of type dns, read at each query (set_answers replaces it whole).
sub _answers {
    my ($self) = @_;
    my %a;
    open my $fh, '<', "$self->{dir}/answers" or return \%a;
    while (my $l = <$fh>) {
        my ($name, @addr) = split ' ', $l;
        $a{$name} = \@addr if defined $name;
    }
    return \%a;
}

# Minimal DNS server, the question echoed in every answer. dns_nxdomain: NXDOMAIN (RCODE 3)
# to every query. dns: A records for the names it knows (no records for other types of
# them), NXDOMAIN for the others.
sub _dns {
    my ($self, $u) = @_;
    while (1) {
        my $from = recv($u, my $pkt, 4096, 0);
        next unless defined $from && length $pkt >= 12;
        my ($id, $flags, $qd) = unpack 'n n n', $pkt;
        next if $flags & 0x8000;                  # a response, not a query
        # walk the first question: labels, then QTYPE, QCLASS
        my $off = 12;
        my @labels;
        while ($off < length $pkt) {
            my $len = ord substr($pkt, $off, 1);
            $off++;
            last if $len == 0;
            push @labels, substr($pkt, $off, $len);
            $off += $len;
        }
        my ($qtype) = unpack 'n', substr($pkt, $off, 2);
        my $question = substr($pkt, 12, $off + 4 - 12);
        $self->_event('query ' . join('.', @labels) . ' ' . ($qtype // '?'));
        my $known = $self->{type} eq 'dns' ? $self->_answers->{lc join('.', @labels)} : undef;
        my @addr = $known && ($qtype // 0) == 1 ? @$known : ();
        my $rcode = $known ? 0 : 3;
        my $rflags = 0x8000 | ($flags & 0x7800) | ($flags & 0x0100) | 0x0080 | $rcode;
        # each A record: a pointer to the name in the question (offset 12), type A, class IN,
        # TTL 1 s, 4 bytes of address
        my $records = join '', map { pack('n n n N n', 0xc00c, 1, 1, 1, 4) . inet_aton($_) } @addr;
        my $resp = pack('n n n n n n', $id, $rflags, 1, scalar @addr, 0, 0) . $question . $records;
        send($u, $resp, 0, $from);
    }
}

1;
