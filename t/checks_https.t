#!/usr/bin/perl
# TLS checks with nginx's OpenSSL, against nginx itself listening with self-signed
# certificates made here by the openssl CLI: type=https (handshake with SNI =
# check_ssl_name, check_ssl_verify against check_ssl_trusted_certificate, then the HTTP
# request), type=ssl_hello (handshake only). A wrong name, an untrusted certificate and TLS
# on a plain port fail with tls_handshake_failed; plain HTTP on the TLS port gets nginx's 400.
#   Run alone: prove -v t/checks_https.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(wait_until self_signed_cert);
use Triage::Backend;
use Triage::Checks qw(status_json peer settled crash_lines);

my $t = Triage::Harness->new;
my $dir = $t->subdir('tls');

self_signed_cert($dir, $_) for qw(good.test sni.test other.test);

my $plain = $t->backend('plain');
# accepts, never answers: a TLS handshake that stays in flight (for the reload at the end)
my $silent = $t->backend('silent');
my $check = 'check interval=200 rise=1 fall=1 timeout=1000';
my $send = 'check_http_send "GET /health HTTP/1.0\r\n\r\n";';

my $conf = <<'CONF';
%%LOAD_MODULE%%
worker_processes 2;
events { worker_connections 128; }
http {
    access_log off;
    upstream https_good {
        server 127.0.0.1:%%PORT_tls%%;
        %%CHECK%% type=https;
        %%SEND%%
        check_http_expect_body ~ "^default OK$";
        check_ssl_name good.test;
        check_ssl_verify on;
        check_ssl_trusted_certificate %%DIR%%/good.test.crt;
    }
    upstream https_sni {
        server 127.0.0.1:%%PORT_tls%%;
        %%CHECK%% type=https;
        %%SEND%%
        check_ssl_name sni.test;
        check_ssl_verify on;
        check_ssl_trusted_certificate %%DIR%%/sni.test.crt;
    }
    upstream https_wrong_name {
        server 127.0.0.1:%%PORT_tls%%;
        %%CHECK%% type=https;
        %%SEND%%
        check_ssl_name bad.test;
        check_ssl_verify on;
        check_ssl_trusted_certificate %%DIR%%/good.test.crt;
    }
    upstream https_untrusted {
        server 127.0.0.1:%%PORT_tls%%;
        %%CHECK%% type=https;
        %%SEND%%
        check_ssl_name good.test;
        check_ssl_verify on;
        check_ssl_trusted_certificate %%DIR%%/other.test.crt;
    }
    upstream https_noverify {
        server 127.0.0.1:%%PORT_tls%%;
        %%CHECK%% type=https;
        %%SEND%%
        check_ssl_name bad.test;
    }
    upstream hello {
        server 127.0.0.1:%%PORT_tls%%;
        %%CHECK%% type=ssl_hello;
    }
    upstream https_plain {
        server %%PLAIN%%;
        %%CHECK%% type=https;
    }
    upstream hello_plain {
        server %%PLAIN%%;
        %%CHECK%% type=ssl_hello;
    }
    upstream https_silent {
        server %%SILENT%%;
        check interval=200 rise=1 fall=1 timeout=60000 type=https;
    }
    upstream hello_silent {
        server %%SILENT%%;
        check interval=200 rise=1 fall=1 timeout=60000 type=ssl_hello;
    }
    upstream http_on_tls {
        server 127.0.0.1:%%PORT_tls%%;
        %%CHECK%% type=http;
        %%SEND%%
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location = /status { triage_status; }
    }
    server {
        listen 127.0.0.1:%%PORT_tls%% ssl default_server;
        server_name good.test;
        ssl_certificate %%DIR%%/good.test.crt;
        ssl_certificate_key %%DIR%%/good.test.key;
        location = /health { return 200 "default OK"; }
    }
    server {
        listen 127.0.0.1:%%PORT_tls%% ssl;
        server_name sni.test;
        ssl_certificate %%DIR%%/sni.test.crt;
        ssl_certificate_key %%DIR%%/sni.test.key;
        location = /health { return 200 "sni OK"; }
    }
}
CONF
my %vars = (DIR => $dir, PLAIN => $plain->addr, SILENT => $silent->addr, CHECK => $check,
    SEND => $send);
$t->start($conf, %vars);

my $tls = '127.0.0.1:' . $t->port('tls');


my $p = settled($t, 'https_good', $tls, 'up');
is($p && $p->{state}, 'up', 'https, verified certificate and name: up');
is($p && $p->{health}{type}, 'https', 'health.type https');
is($p && $p->{health}{last_status}, 200, 'https: the HTTP status over TLS');

$p = settled($t, 'https_sni', $tls, 'up');
is($p && $p->{state}, 'up', 'https: SNI = check_ssl_name: the server presents the sni.test certificate, verified');

$p = settled($t, 'https_wrong_name', $tls, 'unhealthy', 'tls_handshake_failed');
is($p && $p->{health}{last_error}, 'tls_handshake_failed', 'https: a wrong check_ssl_name fails verification');

$p = settled($t, 'https_untrusted', $tls, 'unhealthy', 'tls_handshake_failed');
is($p && $p->{health}{last_error}, 'tls_handshake_failed', 'https: a certificate not trusted fails verification');

$p = settled($t, 'https_noverify', $tls, 'up');
is($p && $p->{state}, 'up', 'https with check_ssl_verify off: the wrong name is accepted');

$p = settled($t, 'hello', $tls, 'up');
is($p && $p->{health}{type}, 'ssl_hello', 'ssl_hello: up after the handshake');

$p = settled($t, 'https_plain', $plain->addr, 'unhealthy', 'tls_handshake_failed');
is($p && $p->{health}{last_error}, 'tls_handshake_failed', 'https against a plain port: tls_handshake_failed');
$p = settled($t, 'hello_plain', $plain->addr, 'unhealthy', 'tls_handshake_failed');
is($p && $p->{health}{last_error}, 'tls_handshake_failed', 'ssl_hello against a plain port: tls_handshake_failed');

$p = settled($t, 'http_on_tls', $tls, 'unhealthy', 'bad_status');
is($p && $p->{health}{last_status}, 400, 'plain http against the TLS port: nginx answers 400, bad_status');

# A reload while handshakes are in flight (the silent peer's, deadline 60 s): the old workers
# exit at once (a check never holds up a graceful shutdown) and close their probes' sockets.
ok(wait_until(sub { $silent->connections >= 2 }, 5, 0.05),
    'both TLS probes of the silent peer are connected, their handshakes in flight');
my $mark = $t->error_log_mark;
my $t0 = time;
$t->reload($conf, %vars);
cmp_ok(time - $t0, '<', 10, 'reload: the old workers did not wait for the in-flight handshakes');
is(join("\n", grep { /open socket|aborting/ } split /\n/, $t->error_log_since($mark)), '',
    'reload: no socket left open by an in-flight handshake');

is(scalar(crash_lines($t)), 0, 'no alert, crit or crash in error.log') or diag(join "\n", crash_lines($t));
$t->stop;
done_testing;
