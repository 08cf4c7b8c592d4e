#!/usr/bin/perl
# Bad input at random, from fixed seeds (so a failure replays), bounded in count and time:
# 1. the module's directives with random arguments: `nginx -t` passes, or fails with an
#    [emerg] naming nginx.conf and the line; it never crashes or hangs;
# 2. a backend answering random valid, odd and broken HTTP responses (Triage::Backend type
#    fuzz: its own 502s, chunked, cut, 1xx, huge or invalid headers, garbage, nothing, with
#    random byte edits, then FIN, RST or silence) behind proxy_pass buffered, unbuffered,
#    intercepting and over upstream keep-alive, all with `triage_fallback ... upstream_errors=on`:
#    no worker crashes or is replaced, every fallback page that goes out is whole (its JSON
#    parses, its length is its Content-Length), and the status still answers and counts;
# 3. health checks (http with keep-alive and a body regex, https, ssl_hello) probing that
#    backend every 50 ms: no worker crashes, each peer's health names what it last saw.
#   Run alone: prove -v t/fuzz.t        Other seeds: TRIAGE_FUZZ_SEED=N prove -v t/fuzz.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Test::More;
use Time::HiRes qw(time);
use Triage::Harness qw(wait_until);
use Triage::Backend;
use Triage::Checks qw(status_json peer crash_lines);

my $SEED = $ENV{TRIAGE_FUZZ_SEED} // 20261121;
note("seed $SEED");
srand($SEED);

# --- 1. directives with random arguments ------------------------------------------------

my @TOKENS = (qw{on off json html auto file=f.json file= file=/nonexistent type= type=text/plain
    upstream_errors=on upstream_errors= upstream_errors=x 0 -1 1 5 502 503 599 600
    99999999999999999999 1k 1m 64k 1g abc "" = a=b interval= interval=0 interval=100
    interval=-5 rise=0 fall=0 timeout=0 timeout=99999999999 type=http type=https type=tcp
    type=ssl_hello type=mysql default_down=true default_down=x port=0 port=70000 port=80
    jitter=5 jitter= http_2xx http_3xx http_5xx http_xxx ~ "^ok$" "(unclosed" * prometheus recent=0 recent=4 recent=999999999 size=1k size=0
    name format=json format=xml nothing-listening all unknown-rule error warn},
    'x' x 5000, "\xff\xfe", "'a b'", '"GET / HTTP/1.0\r\n\r\n"', '"unclosed');
my %DIRECTIVES = (
    http => [qw(triage triage_fallback triage_fallback_details triage_fallback_retry_after
        triage_fallback_status triage_lint triage_lint_ignore triage_zone check_shm_size)],
    server => [qw(triage triage_fallback triage_fallback_details triage_fallback_retry_after
        triage_fallback_status triage_lint_ignore)],
    location => [qw(triage triage_fallback triage_fallback_details triage_fallback_retry_after
        triage_fallback_status triage_status check_status triage_lint_ignore)],
    upstream => [qw(check check_http_expect_alive check_http_expect_body check_http_send
        check_http_expect_status check_keepalive_requests check_ssl_name
        check_ssl_trusted_certificate check_ssl_verify)],
);
my @CONTEXTS = sort keys %DIRECTIVES;
# Arguments each directive takes, mixed with the random ones so that some configurations pass.
my %GOOD = (
    triage => [qw(on off)],
    triage_fallback => [qw(off json html auto file=f.json type=text/plain upstream_errors=on)],
    triage_fallback_details => [qw(on off)],
    triage_fallback_retry_after => [qw(0 5 30)],
    triage_fallback_status => [qw(502 503 504)],
    triage_lint => [qw(on off)],
    triage_lint_ignore => [qw(nothing-listening timeout-below-check)],
    triage_zone => [qw(triage:1m triage:64k recent=4 recent=0)],
    check_shm_size => [qw(1m 64k)],
    triage_status => [qw(json prometheus html)],
    check_status => [qw(json html csv)],
    check => [qw(interval=1000 rise=2 fall=3 timeout=500 type=http type=tcp type=https
        type=ssl_hello default_down=false port=8080 jitter=100)],
    check_http_expect_alive => [qw(http_2xx http_3xx http_4xx)],
    check_http_expect_body => ['~', '"ok"', '"^ok$"'],
    check_http_send => ['"GET / HTTP/1.0\r\n\r\n"'],
    check_http_expect_status => [qw(200 204 301)],
    check_keepalive_requests => [qw(1 5 100)],
    check_ssl_name => [qw(example.test)],
    check_ssl_trusted_certificate => [qw(f.json /nonexistent)],
    check_ssl_verify => [qw(on off)],
);

my $cf = Triage::Harness->new(name => 'fuzz_conf');
open my $fj, '>', $cf->prefix . '/conf/f.json' or die $!;
print $fj qq({"x": 1}\n);
close $fj;
my ($passed, $failed, @bad) = (0, 0);
my $until = time + 60;
for my $i (1 .. 400) {
    last if time > $until;
    my %in = map { $_ => '' } @CONTEXTS;
    for (1 .. 1 + int rand 3) {
        my $ctx = $CONTEXTS[int rand @CONTEXTS];
        my $d = $DIRECTIVES{$ctx}[int rand @{ $DIRECTIVES{$ctx} }];
        my $good = $GOOD{$d};
        my @args = map { rand() < 0.7 ? $good->[int rand @$good] : $TOKENS[int rand @TOKENS] }
            1 .. int rand 5;
        $in{$ctx} .= join(' ', $d, @args) . ";\n";
    }
    my ($rc, $out) = $cf->test_config(<<CONF);
%%LOAD_MODULE%%
events { worker_connections 16; }
http {
$in{http}
    upstream u {
        server 127.0.0.1:1;
$in{upstream}
    }
    server {
        listen 127.0.0.1:1;
$in{server}
        location / {
            proxy_pass http://u;
$in{location}
        }
    }
}
CONF
    if ($rc == 0 && $out =~ /test is successful/) {
        $passed++;
    } elsif ($rc == 1 && $out =~ /\[emerg\] .* in \S+nginx\.conf:\d+/s) {
        $failed++;
    } else {
        my $conf = do { local (@ARGV, $/) = ($cf->conf_file); <> };
        push @bad, "configuration $i: exit $rc:\n$conf$out";
        last if @bad >= 3;
    }
}
note("nginx -t: $passed passed, $failed refused with [emerg]");
is(scalar @bad, 0, 'random directive arguments: nginx -t passes or names file and line, never crashes')
    or diag join "\n", @bad;
cmp_ok($passed + $failed, '>=', 100, 'at least 100 configurations tried');
cmp_ok($failed, '>', 0, 'some were refused (the arguments are bad enough)');

# --- 2. a backend answering random responses ------------------------------------------

my $t = Triage::Harness->new;
my $fuzz = $t->backend('fuzz', seed => $SEED);
$t->start(<<'CONF', FUZZ => $fuzz->addr);
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 256; }
http {
    access_log off;
    triage_lint off;
    upstream fuzz { server %%FUZZ%% max_fails=0; }
    upstream fuzz_keepalive { server %%FUZZ%% max_fails=0; keepalive 4; }
    proxy_read_timeout 300ms;
    proxy_connect_timeout 1s;
    triage_fallback json upstream_errors=on;
    triage_fallback_details on;
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /status { triage_status; }
        location /buffered { proxy_pass http://fuzz; }
        location /unbuffered { proxy_buffering off; proxy_pass http://fuzz; }
        location /intercept {
            proxy_intercept_errors on;
            triage_fallback html upstream_errors=on;
            proxy_pass http://fuzz;
        }
        location /keepalive {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://fuzz_keepalive;
        }
    }
}
CONF
my @workers = sort $t->worker_pids;
my $port = $t->port('main');

# One request on its own connection: the raw answer (read until EOF, 5 s at most).
sub raw_request {
    my ($method, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or return undef;
    print $s "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    my ($data, $deadline) = ('', time + 5);
    my $sel = IO::Select->new($s);
    while (time < $deadline && $sel->can_read($deadline - time)) {
        my $n = sysread($s, $data, 65536, length $data);
        last unless $n;
    }
    close $s;
    return $data;
}

# 4 clients in parallel, 60 requests each: what each answer was, one line per request.
my @paths = qw(/buffered /unbuffered /intercept /keepalive);
my $results = $t->prefix . '/results';
my @kids;
for my $k (1 .. 4) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        srand($SEED + $k);
        open my $out, '>', "$results.$k" or POSIX::_exit(1);
        my $stop = time + 60;
        for (1 .. 60) {
            last if time > $stop;
            my $m = rand() < 0.2 ? 'HEAD' : 'GET';
            my $data = raw_request($m, $paths[int rand @paths]) // '';
            my ($head, $body) = split /\r\n\r\n/, $data, 2;
            $head //= '';
            $body //= '';
            my $verdict = 'other';
            # our page: a fallback (no-store) JSON or HTML with the request id
            if ($head =~ m{^HTTP/1\.1 (50[24]) }
                && $head =~ m{^Cache-Control: no-store}mi
                && $head =~ m{^Content-Type: (\S+)}mi)
            {
                my $type = $1;
                my ($len) = $head =~ /^Content-Length: (\d+)/mi;
                if ($m eq 'HEAD') {
                    $verdict = $body eq '' ? 'page' : 'HEAD with a body';
                } elsif (!defined $len || $len != length $body) {
                    $verdict = 'page length ' . ($len // 'none') . ' != ' . length $body;
                } elsif ($type =~ /json/) {
                    my $j = eval { JSON::PP::decode_json($body) };
                    $verdict = $j && $j->{request_id} ? 'page' : "broken JSON page: $body";
                } else {
                    $verdict = $body =~ m{</html>\s*\z} ? 'page' : 'cut HTML page';
                }
            }
            $verdict =~ s/\n/\\n/g;
            print $out "$verdict\n";
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
my %seen;
for my $k (1 .. 4) {
    open my $in, '<', "$results.$k" or next;
    $seen{$_}++ for map { chomp; $_ } <$in>;
}
my $total = 0;
$total += $_ for values %seen;
note(join ', ', map {"$_: $seen{$_}"} sort keys %seen);
cmp_ok($total, '>=', 100, 'at least 100 requests answered (or cut) against the fuzzing backend');
cmp_ok($seen{page} // 0, '>', 0, 'some were answered by the fallback');
is_deeply([grep { $_ ne 'page' && $_ ne 'other' } sort keys %seen], [],
    'every fallback page was whole: JSON that parses, HTML to its end, the length announced');
is_deeply([sort $t->worker_pids], \@workers, 'the same workers: none crashed or was replaced');
my $j = status_json($t);
ok(($j->{upstreams}{fuzz}{totals}{requests} // 0) > 0, 'the status still answers and counts');
is_deeply([crash_lines($t)], [], 'no alert, crit or crash in error.log');

# --- 3. health checks against it ------------------------------------------------------

$t->reload(<<'CONF', FUZZ => $fuzz->addr);
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 256; }
http {
    access_log off;
    triage_lint off;
    upstream http_keepalive {
        server %%FUZZ%%;
        check interval=50 rise=1 fall=1 timeout=300 type=http;
        check_http_send "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
        check_http_expect_body ~ "ok";
        check_keepalive_requests 5;
    }
    upstream http_alive {
        server %%FUZZ%%;
        check interval=50 rise=1 fall=1 timeout=300 type=http;
        check_http_expect_alive http_2xx http_3xx;
    }
    upstream https { server %%FUZZ%%; check interval=50 rise=1 fall=1 timeout=300 type=https; }
    upstream hello { server %%FUZZ%%; check interval=50 rise=1 fall=1 timeout=300 type=ssl_hello; }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /status { triage_status; }
    }
}
CONF
@workers = sort $t->worker_pids;
my $before = $fuzz->count;
ok(wait_until(sub { $fuzz->count - $before >= 60 }, 20, 0.1),
    'the checks sent at least 60 probes to the fuzzing backend');
$j = status_json($t);
for my $up (qw(http_keepalive http_alive https hello)) {
    my $h = peer($j, $up, $fuzz->addr);
    ok($h && $h->{health} && (defined $h->{health}{last_error} || defined $h->{health}{last_status}),
        "$up: the peer's health names what it last saw")
        or diag explain $h;
}
is_deeply([sort $t->worker_pids], \@workers, 'checks: the same workers, none crashed');
is_deeply([crash_lines($t)], [],
    'checks: no alert, crit or crash in error.log');

$t->stop;
done_testing();
