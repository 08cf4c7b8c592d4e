#!/usr/bin/perl
# Every proxy_pass failure class, produced for real, classified by the module:
# response status, $triage_* variables in the access log, and the error.log
# line that proves the fault happened.   Run alone: prove -v t/causes_proxy.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use IO::Socket::INET;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM SOL_SOCKET SO_RCVBUF);
use IO::Select;
use Triage::Harness qw(log_format_directive self_signed_cert cert_chain);
use Triage::Backend;

my @F = qw(request_uri status triage_cause triage_causes triage_errno triage_phase
           triage_peer upstream_addr upstream_status triage_hint);
my $LOG_FORMAT = log_format_directive('triage', @F);

my $t = Triage::Harness->new;
my %b = map { $_ => $t->backend($_) }
    qw(ok silent close reset invalid_header big_header bad_gateway plain blackhole dns_nxdomain);
# kept-alive connections the backend closes (FIN) or resets as nginx reuses them
$b{ka_fin} = $t->backend('keepalive_race');
$b{ka_rst} = $t->backend('keepalive_race', then => 'reset');
# holds the one connection max_conns=1 allows
$b{busy} = $t->backend('silent');
# after the header: a body cut short (Content-Length 1000, 100 bytes, FIN), and a WebSocket
# backend that switches protocols and then says nothing
$b{cut} = $t->backend('cut_body');
# gunicorn's worker timeout: the backend takes the request, says nothing, and its worker is
# killed (the connection closes) some seconds later
$b{late} = $t->backend('close', delay => 5.5);
# php-fpm's port given plain HTTP (proxy_pass where fastcgi_pass was meant)
$b{fpm} = $t->backend('fastcgi_only');
# a large answer, for a temporary file that nginx cannot write
$b{large} = $t->backend('ok', body => 'x' x 4_000_000);
my $ptemp = $t->subdir('ptemp');
$b{ws} = $t->backend('custom', then => 'keep',
    respond => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
my $sockdir = $t->subdir('sock');
my $perm_sock    = "$sockdir/denied.sock";
my $missing_sock = "$sockdir/missing.sock";
$b{denied} = $t->backend('ok', unix => $perm_sock, mode => 0000);
# sockets only ever given through a variable: no configured upstream has their name, so
# nginx builds their peers at run time
my $perm_sock2    = "$sockdir/denied2.sock";
my $missing_sock2 = "$sockdir/missing2.sock";
my $missing_sock3 = "$sockdir/missing3.sock";
$b{denied2} = $t->backend('ok', unix => $perm_sock2, mode => 0000);
# a unix socket whose listen queue is full (php-fpm overloaded): connect() fails at once
my $full_sock = "$sockdir/full.sock";
$b{full} = $t->backend('blackhole', unix => $full_sock);
# php-fpm stopped without removing its socket: the file is there, nothing listens on it
my $stale_sock = "$sockdir/stale.sock";
{
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $stale_sock, Listen => 1)
        or die "unix socket $stale_sock: $!";
    chmod 0666, $stale_sock;
    close $s;
}
my $closed  = Triage::Backend::closed_port();
my $closed2 = Triage::Backend::closed_port();
my $closed3 = Triage::Backend::closed_port();
my $closed4 = Triage::Backend::closed_port();
# a TLS backend (a server of the same nginx) whose certificate is for good.test, and a
# certificate nginx is told to trust instead for /tls_untrusted
# a DNS server that is down with its port still open: queries reach it, nothing answers
my $mute_dns = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0)
    or die "udp socket: $!";
my $certs = $t->subdir('tls');
self_signed_cert($certs, $_) for qw(good.test other.test);
self_signed_cert($certs, 'old.test', expired => 1);
# a chain with two intermediate CAs (as some commercial CAs issue), served whole and without
# its intermediates
cert_chain($certs, 'chain.test', 2);
# a TLS-only backend (OpenSSL's own server) given plain HTTP: proxy_pass http:// to an https port
$b{tls_only} = $t->backend('tls_only', cert => "$certs/good.test.crt", key => "$certs/good.test.key");

$t->start(<<'CONF', LOG_FORMAT => $LOG_FORMAT,
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 128; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
    proxy_connect_timeout 1s;
    proxy_read_timeout 1s;
    proxy_send_timeout 1s;
    proxy_next_upstream off;

    upstream next_try {
        server 127.0.0.1:%%CLOSED%%;
        server %%SILENT%%;
    }
    upstream busy { server %%BUSY%% max_conns=1; }
    upstream all_down { server 127.0.0.1:%%CLOSED%% down; server 127.0.0.1:%%CLOSED2%% down; }
    upstream ka_fin { server %%KA_FIN%%; keepalive 4; }
    upstream ka_rst { server %%KA_RST%%; keepalive 4; }
    upstream dead {
        server 127.0.0.1:%%CLOSED%% max_fails=1 fail_timeout=30s;
        server 127.0.0.1:%%CLOSED2%% max_fails=1 fail_timeout=30s;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /ok       { proxy_pass http://%%OK%%; }
        # an if block in a proxied location has no content handler of its own: the
        # location's runs, with the if block's configuration (the module wraps that handler)
        location /if_ok      { proxy_pass http://%%OK%%; if ($arg_x) { add_header X-If 1; } }
        location /if_refused { proxy_pass http://127.0.0.1:%%CLOSED%%; if ($arg_x) { add_header X-If 1 always; } }
        # a run-time upstream given a request body that comes after the header: nginx sets
        # the upstream up once the body is read, after the content handler returned
        location /runtime_post { set $b 127.0.0.1:%%CLOSED4%%; proxy_pass http://$b; }
        location /if_runtime { set $ok_addr %%OK%%; proxy_pass http://$ok_addr; if ($arg_x) { add_header X-If 1; } }
        location /refused  { proxy_pass http://127.0.0.1:%%CLOSED%%; }
        location /ctimeout { proxy_pass http://%%BLACKHOLE%%; }
        location /silent   { proxy_pass http://%%SILENT%%; }
        location /close    { proxy_pass http://%%CLOSE%%; }
        location /reset    { proxy_pass http://%%RESET%%; }
        location /invalid  { proxy_pass http://%%INVALID%%; }
        location /big      { proxy_pass http://%%BIG%%; }
        location /own502   { proxy_pass http://%%OWN502%%; }
        location /denied   { proxy_pass http://unix:%%DENIED%%:; }
        location /nosocket { proxy_pass http://unix:%%MISSING%%:; }
        location /stale    { proxy_pass http://unix:%%STALE%%:; }
        location /nxdomain {
            resolver 127.0.0.1:%%DNS%% valid=1s ipv6=off;
            resolver_timeout 1s;
            set $backend_host nx.invalid;
            proxy_pass http://$backend_host:%%CLOSED%%;
        }
        location /dns_silent {
            resolver 127.0.0.1:%%MUTE_DNS%% ipv6=off;
            resolver_timeout 1s;
            set $backend_host app.test;
            proxy_pass http://$backend_host:%%CLOSED%%;
        }
        location /tls      { proxy_pass https://%%PLAIN%%; }
        # accepts, never answers the ClientHello: the handshake stalls (proxy_connect_timeout)
        location /tls_silent { proxy_pass https://%%SILENT%%; }
        # the handshake completes, then nginx refuses the certificate (proxy_ssl_verify);
        # without session reuse (a session resumed from /tls_verified keeps its verify result)
        location /tls_ {
            proxy_pass https://127.0.0.1:%%PORT_tls%%;
            proxy_ssl_session_reuse off;
            proxy_ssl_verify on;
            proxy_ssl_name good.test;
            proxy_ssl_trusted_certificate %%CERTS%%/good.test.crt;
            location /tls_untrusted {
                proxy_pass https://127.0.0.1:%%PORT_tls%%;
                proxy_ssl_trusted_certificate %%CERTS%%/other.test.crt;
            }
            location /tls_wrongname {
                proxy_pass https://127.0.0.1:%%PORT_tls%%;
                proxy_ssl_name bad.test;
            }
            # a certificate that expired yesterday, trusted and for the right name
            location /tls_expired {
                proxy_pass https://127.0.0.1:%%PORT_tls_old%%;
                proxy_ssl_name old.test;
                proxy_ssl_trusted_certificate %%CERTS%%/old.test.crt;
            }
        }
        # certificate chains nginx cannot follow: the root CA trusted, the name right
        location /chain_ {
            proxy_ssl_session_reuse off;
            proxy_ssl_verify on;
            proxy_ssl_name chain.test;
            proxy_ssl_trusted_certificate %%CERTS%%/chain.test.root.crt;
            # two intermediates, proxy_ssl_verify_depth 1 (nginx's default)
            location /chain_too_long { proxy_pass https://127.0.0.1:%%PORT_tls_chain%%; }
            # the same chain with the depth it needs: the control
            location /chain_followed {
                proxy_pass https://127.0.0.1:%%PORT_tls_chain%%;
                proxy_ssl_verify_depth 2;
            }
            # the backend sends its certificate without its intermediates
            location /chain_no_intermediates {
                proxy_pass https://127.0.0.1:%%PORT_tls_leaf%%;
                proxy_ssl_verify_depth 3;
            }
            # the depth the chain needs, and another CA trusted than its root
            location /chain_untrusted {
                proxy_pass https://127.0.0.1:%%PORT_tls_chain%%;
                proxy_ssl_verify_depth 2;
                proxy_ssl_trusted_certificate %%CERTS%%/other.test.crt;
            }
        }
        # run-time upstreams: nginx builds their peers without peer.init
        location /var_refused { set $b 127.0.0.1:%%CLOSED3%%; proxy_pass http://$b; }
        location = /status    { triage_status; access_log off; }
        location /var_silent  { set $b %%SILENT%%; proxy_pass http://$b; }
        # a unix socket given through a variable: nginx connects inside the content handler,
        # and the connect() fails there (synchronously)
        location /full         { proxy_pass http://unix:%%FULL%%:; }
        location /var_denied   { set $s %%DENIED2%%; proxy_pass http://unix:$s:; }
        location /var_nosocket { set $s %%MISSING2%%; proxy_pass http://unix:$s:; }
        # the same failure, inside the content handler, sent at once by error_page to a
        # location whose upstream is a configured one
        location /var_nosocket_ep {
            set $s %%MISSING3%%;
            proxy_pass http://unix:$s:;
            error_page 502 = @to_ok;
        }
        location @to_ok { proxy_pass http://%%OK%%; }
        location /var_denied_fallback {
            set $s %%DENIED2%%;
            proxy_pass http://unix:$s:;
            triage_fallback json;
            triage_fallback_details on;
        }
        location /next     { proxy_next_upstream error timeout; proxy_pass http://next_try; }
        location /dead     { proxy_next_upstream error timeout; proxy_pass http://dead; }
        location /busy     { proxy_pass http://busy; }
        location /cut      { proxy_pass http://%%CUT%%; }
        location /tls_port { proxy_pass http://%%TLS_ONLY%%; }
        location /close_tls { proxy_pass https://127.0.0.1:%%PORT_tls%%; }
        location /sni_off  { proxy_pass https://127.0.0.1:%%PORT_sni%%; }
        location /sni_on {
            proxy_pass https://127.0.0.1:%%PORT_sni%%;
            proxy_ssl_server_name on;
            proxy_ssl_name good.test;
            proxy_set_header Host good.test;
        }
        location /fpm_port { proxy_pass http://%%FPM%%; }
        location /late     { proxy_read_timeout 10s; proxy_pass http://%%LATE%%; }
        location /ws {
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection upgrade;
            proxy_pass http://%%WS%%;
        }
        location /all_down { proxy_pass http://all_down; }
        location ~ ^/ka_(fin|rst)/ {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            triage_fallback json;
            triage_fallback_details on;
            proxy_pass http://ka_$1;
        }
    }
    # a client that does not read fills this small send buffer at once: nginx buffers the
    # rest of the answer in a temporary file
    server {
        listen 127.0.0.1:%%PORT_slow%% sndbuf=4k;
        location /tempfile {
            proxy_buffers 4 4k;
            proxy_busy_buffers_size 4k;
            proxy_temp_path %%PTEMP%%;
            proxy_pass http://%%LARGE%%;
        }
        # nginx holds the answer in memory only, and gives a client that stops reading 1 s
        location /client_stalls {
            proxy_buffers 4 4k;
            proxy_busy_buffers_size 4k;
            proxy_max_temp_file_size 0;
            send_timeout 1s;
            # nginx says "client timed out" at info
            error_log logs/error.log info;
            proxy_pass http://%%LARGE%%;
        }
        location = /status { triage_status; access_log off; }
    }
    # a TLS front end that needs the server name (SNI), as CDNs and shared front ends do
    server {
        listen 127.0.0.1:%%PORT_sni%% ssl default_server;
        ssl_reject_handshake on;
    }
    server {
        listen 127.0.0.1:%%PORT_sni%% ssl;
        server_name good.test;
        ssl_certificate %%CERTS%%/good.test.crt;
        ssl_certificate_key %%CERTS%%/good.test.key;
        access_log off;
        location / { return 200 "sni ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_tls_chain%% ssl;
        ssl_certificate %%CERTS%%/chain.test.chain.crt;
        ssl_certificate_key %%CERTS%%/chain.test.key;
        access_log off;
        location / { return 200 "tls ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_tls_leaf%% ssl;
        ssl_certificate %%CERTS%%/chain.test.leaf.crt;
        ssl_certificate_key %%CERTS%%/chain.test.key;
        access_log off;
        location / { return 200 "tls ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_tls_old%% ssl;
        ssl_certificate %%CERTS%%/old.test.crt;
        ssl_certificate_key %%CERTS%%/old.test.key;
        access_log off;
        location / { return 200 "tls ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_tls%% ssl;
        ssl_certificate %%CERTS%%/good.test.crt;
        ssl_certificate_key %%CERTS%%/good.test.key;
        access_log off;
        location / { return 200 "tls ok\n"; }
        # closes the connection without an answer (the TLS session shut down)
        location /close_tls { return 444; }
    }
}
CONF
    OK => $b{ok}->addr, CLOSED => $closed, CLOSED2 => $closed2, CLOSED3 => $closed3, CLOSED4 => $closed4,
    BLACKHOLE => $b{blackhole}->addr, SILENT => $b{silent}->addr, CLOSE => $b{close}->addr,
    RESET => $b{reset}->addr, INVALID => $b{invalid_header}->addr, BIG => $b{big_header}->addr,
    OWN502 => $b{bad_gateway}->addr, DENIED => $perm_sock, MISSING => $missing_sock,
    DENIED2 => $perm_sock2, MISSING2 => $missing_sock2, MISSING3 => $missing_sock3, FULL => $full_sock,
    DNS => $b{dns_nxdomain}->port, PLAIN => $b{plain}->addr, CERTS => $certs,
    KA_FIN => $b{ka_fin}->addr, KA_RST => $b{ka_rst}->addr, BUSY => $b{busy}->addr,
    CUT => $b{cut}->addr, WS => $b{ws}->addr, LATE => $b{late}->addr,
    TLS_ONLY => $b{tls_only}->addr, STALE => $stale_sock, LARGE => $b{large}->addr, FPM => $b{fpm}->addr,
    PTEMP => $ptemp,
    MUTE_DNS => $mute_dns->sockport);

# errno => undef: not checked. Timeouts report 110, as nginx's own error.log line does.
# The SNI front end is this nginx's ssl_reject_handshake, which rejects a handshake without
# a server name in nginx 1.28 (its servername callback runs then too); older ones, such as
# Debian's 1.22, only reject a name they do not serve, and answer without SNI.
my @nv = split /\./, $t->nginx_version;
my $SNI_FRONT_END = ($nv[0] * 1000 + $nv[1]) >= 1028;

my @cases = (
    { uri => '/refused', status => 502, cause => 'connect_refused', errno => 111,
      phase => 'connect', peer => "127.0.0.1:$closed",
      err => qr/\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream/ },
    # a TCP connect that times out: the listen-backlog hint (a stalled TLS handshake has its own)
    { uri => '/ctimeout', status => 504, cause => 'connect_timeout', errno => 110,
      phase => 'connect', peer => $b{blackhole}->addr, hint => qr/^the backend did not accept the connection in time/,
      err => qr/\[error\] .*upstream timed out \(110: Connection timed out\) while connecting to upstream/ },
    # accepted and never answered: a slow request, or every worker busy with others
    { uri => '/silent', status => 504, cause => 'read_timeout', errno => 110,
      phase => 'read_header', peer => $b{silent}->addr,
      hint => qr/look for slow queries, or for every one of its workers being busy \(php-fpm pm\.max_children, gunicorn --workers: requests wait in its listen queue\), or raise proxy_read_timeout$/,
      err => qr/\[error\] .*upstream timed out \(110: Connection timed out\) while reading response header from upstream/ },
    # a fresh connection: not the kept-alive race below, the hint looks at the backend
    { uri => '/close', status => 502, cause => 'premature_close', errno => '',
      hint => qr/^the backend closed the connection before answering: check its logs for crashes/,
      phase => 'read_header', peer => $b{close}->addr,
      err => qr/\[error\] .*upstream prematurely closed connection while reading response header from upstream/ },
    # a TLS server closes the same way on a plain request: the hint says so
    { uri => '/tls_port', status => 502, cause => 'premature_close', errno => '',
      hint => qr/; a TLS port closes the same way on plain HTTP \(then proxy_pass https:\/\/\), and so does a uWSGI socket \(then uwsgi_pass\)$/,
      phase => 'read_header', peer => $b{tls_only}->addr,
      err => qr/\[error\] .*upstream prematurely closed connection while reading response header from upstream/ },
    # the same close over TLS: a crash, not a TLS port (the hint does not say https://)
    { uri => '/close_tls', status => 502, cause => 'premature_close', errno => '',
      hint => qr/^the backend closed the connection before answering: check its logs for crashes, OOM kills or worker restarts$/,
      phase => 'read_header', peer => qr/^127\.0\.0\.1:\d+$/,
      err => qr/\[error\] .*upstream prematurely closed connection while reading response header from upstream/ },
    # php-fpm resets a request that is not FastCGI: the hint says so
    { uri => '/fpm_port', status => 502, cause => 'connection_reset', errno => 104,
      hint => qr/; a FastCGI port \(php-fpm\) resets a plain HTTP request this way \(then fastcgi_pass\)$/,
      phase => 'read_header', peer => $b{fpm}->addr,
      err => qr/\[error\] .*recv\(\) failed \(104: Connection reset by peer\) while reading response header from upstream/ },
    # the same close, 5.5 s after the request: the backend's own timeout, not a crash
    { uri => '/late', status => 502, cause => 'premature_close', errno => '',
      hint => qr/^the backend closed the connection without answering, 5 s or more after the request: its own request timeout most likely killed it \(gunicorn --timeout/,
      phase => 'read_header', peer => $b{late}->addr,
      err => qr/\[error\] .*upstream prematurely closed connection while reading response header from upstream/ },
    { uri => '/reset', status => 502, cause => 'connection_reset', errno => 104,
      hint => qr/^the backend reset the connection: check its logs for crashes/,
      phase => 'read_header', peer => $b{reset}->addr,
      err => qr/\[error\] .*recv\(\) failed \(104: Connection reset by peer\) while reading response header from upstream/ },
    { uri => '/invalid', status => 502, cause => 'invalid_header', errno => '',
      phase => 'read_header', peer => $b{invalid_header}->addr,
      err => qr/\[error\] .*upstream sent invalid header: "X-Bad\\x20\.\.\." while reading response header from upstream/ },
    { uri => '/big', status => 502, cause => 'header_too_big', errno => '',
      phase => 'read_header', peer => $b{big_header}->addr,
      err => qr/\[error\] .*upstream sent too big header while reading response header from upstream/ },
    { uri => '/own502', status => 502, cause => 'upstream_502', errno => '',
      phase => 'read_header', peer => $b{bad_gateway}->addr, body => qr/backend's own 502/,
      err => undef },
    { uri => '/denied', status => 502, cause => 'permission_denied', errno => 13,
      phase => 'connect', peer => "unix:$perm_sock",
      err => qr/\[crit\] .*connect\(\) to unix:\Q$perm_sock\E failed \(13: Permission denied\) while connecting to upstream/ },
    { uri => '/nosocket', status => 502, cause => 'socket_not_found', errno => 2,
      phase => 'connect', peer => "unix:$missing_sock",
      err => qr/\[crit\] .*connect\(\) to unix:\Q$missing_sock\E failed \(2: No such file or directory\) while connecting to upstream/ },
    { uri => '/stale', status => 502, cause => 'connect_refused', errno => 111,
      phase => 'connect', peer => "unix:$stale_sock",
      hint => qr/^the unix socket file exists but nothing listens on it: the backend \(php-fpm/,
      err => qr/\[error\] .*connect\(\) to unix:\Q$stale_sock\E failed \(111: Connection refused\) while connecting to upstream/ },
    # no address was tried: the peer is empty
    { uri => '/nxdomain', status => 502, cause => 'host_not_found', errno => '',
      phase => 'resolve', peer => '',
      err => qr/\[error\] .*nx\.invalid could not be resolved \(3: Host not found\)/ },
    # the same cause when the DNS server does not answer, with nginx's ETIMEDOUT and its hint
    { uri => '/dns_silent', status => 502, cause => 'host_not_found', errno => 110,
      phase => 'resolve', peer => '', hint => qr/DNS server of the resolver directive did not answer within resolver_timeout/,
      err => qr/\[error\] .*app\.test could not be resolved \(110: Operation timed out\)/ },
    { uri => '/var_refused', status => 502, cause => 'connect_refused', errno => 111,
      phase => 'connect', peer => "127.0.0.1:$closed3",
      err => qr/\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream/ },
    { uri => '/var_silent', status => 504, cause => 'read_timeout', errno => 110,
      phase => 'read_header', peer => $b{silent}->addr,
      err => qr/\[error\] .*upstream timed out \(110: Connection timed out\) while reading response header from upstream/ },
    # Linux answers EAGAIN, not ECONNREFUSED, when a unix socket's queue is full; the cause
    # vocabulary has no name for it (`other`), the hint says what it is
    { uri => '/full', status => 502, cause => 'other', errno => 11,
      phase => 'connect', peer => "unix:$full_sock", hint => qr/listen queue is full/,
      err => qr/\[error\] .*connect\(\) to unix:\Q$full_sock\E failed \(11: Resource temporarily unavailable\) while connecting to upstream/ },
    { uri => '/var_denied', status => 502, cause => 'permission_denied', errno => 13,
      phase => 'connect', peer => "unix:$perm_sock2",
      err => qr/\[crit\] .*connect\(\) to unix:\Q$perm_sock2\E failed \(13: Permission denied\) while connecting to upstream/ },
    { uri => '/var_nosocket', status => 502, cause => 'socket_not_found', errno => 2,
      phase => 'connect', peer => "unix:$missing_sock2",
      err => qr/\[crit\] .*connect\(\) to unix:\Q$missing_sock2\E failed \(2: No such file or directory\) while connecting to upstream/ },
    { uri => '/tls_silent', status => 504, cause => 'connect_timeout', errno => 110,
      phase => 'connect', peer => $b{silent}->addr,
      hint => qr/^the backend accepted the connection but did not finish the TLS handshake in time/,
      err => qr/\[error\] .*upstream timed out \(110: Connection timed out\) while SSL handshaking to upstream/ },
    { uri => '/tls', status => 502, cause => 'tls_handshake_failed', errno => undef,
      phase => 'connect', peer => $b{plain}->addr,
      err => qr/\[error\] .*SSL_do_handshake\(\) failed .* while SSL handshaking to upstream/ },
    # TLS to the backend works, and its certificate is refused: the handshake completed,
    # the request never went out, the connection looks refused but for its TLS state
    { uri => '/tls_untrusted', status => 502, cause => 'tls_handshake_failed', errno => '',
      phase => 'connect', peer => qr/^127\.0\.0\.1:\d+$/,
      hint => qr/proxy_ssl_verify on, its certificate must be trusted by proxy_ssl_trusted_certificate/,
      err => qr/\[error\] .*upstream SSL certificate verify error: \(18:self.signed certificate\) while SSL handshaking to upstream/ },
    # nginx sends no server name by default: the front end refuses the handshake (only
    # where it can: see $SNI_FRONT_END)
    { uri => '/sni_off', needs_sni_front_end => 1, status => 502, cause => 'tls_handshake_failed', errno => '',
      phase => 'connect', peer => qr/^127\.0\.0\.1:\d+$/,
      hint => qr/^the backend refused the TLS handshake, and nginx sent it no server name \(SNI\), .*: set proxy_ssl_server_name on/,
      err => qr/SSL_do_handshake\(\) failed .*SSL alert number 112\) while SSL handshaking to upstream/ },
    { uri => '/tls_expired', status => 502, cause => 'tls_handshake_failed', errno => '',
      phase => 'connect', peer => qr/^127\.0\.0\.1:\d+$/,
      hint => qr/^the backend's TLS certificate has expired \(error\.log: certificate has expired\): renew it/,
      err => qr/\[error\] .*upstream SSL certificate verify error: \(10:certificate has expired\) while SSL handshaking to upstream/ },
    # two intermediate CAs, nginx's default verify depth (1): OpenSSL stops building the
    # chain at the depth and reports no issuer (20), not "certificate chain too long" (22)
    { uri => '/chain_too_long', status => 502, cause => 'tls_handshake_failed', errno => '',
      phase => 'connect', peer => qr/^127\.0\.0\.1:\d+$/,
      hint => qr/^nginx could not follow the backend's certificate chain to a trusted CA .*: proxy_ssl_verify_depth .* is 1 by default/,
      err => qr/\[error\] .*upstream SSL certificate verify error: \(20:unable to get local issuer certificate\) while SSL handshaking to upstream/ },
    # the same line when the chain's root CA is not trusted: the hint names both
    { uri => '/chain_untrusted', status => 502, cause => 'tls_handshake_failed', errno => '',
      phase => 'connect', peer => qr/^127\.0\.0\.1:\d+$/,
      hint => qr/^nginx could not follow the backend's certificate chain .*proxy_ssl_trusted_certificate lacks the root CA that issued the chain$/,
      err => qr/\[error\] .*upstream SSL certificate verify error: \(20:unable to get local issuer certificate\) while SSL handshaking to upstream/ },
    { uri => '/chain_no_intermediates', status => 502, cause => 'tls_handshake_failed', errno => '',
      phase => 'connect', peer => qr/^127\.0\.0\.1:\d+$/,
      hint => qr/^the backend sent its certificate without the intermediate CA certificates .*: configure the backend with its full chain/,
      err => qr/\[error\] .*upstream SSL certificate verify error: \(21:unable to verify the first certificate\) while SSL handshaking to upstream/ },
    { uri => '/tls_wrongname', status => 502, cause => 'tls_handshake_failed', errno => '',
      phase => 'connect', peer => qr/^127\.0\.0\.1:\d+$/, hint => qr/and name proxy_ssl_name$/,
      err => qr/\[error\] .*upstream SSL certificate does not match "bad\.test" while SSL handshaking to upstream/ },
    { uri => '/next', status => 504, cause => 'read_timeout', causes => 'connect_refused,read_timeout',
      errno => 110, phase => 'read_header', peer => $b{silent}->addr,
      err => qr/\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream/,
      err2 => qr/\[error\] .*upstream timed out \(110: Connection timed out\) while reading response header from upstream/ },
);
if (!$SNI_FRONT_END) {
    @cases = grep { !$_->{needs_sni_front_end} } @cases;
    SKIP: {
        skip "/sni_off: no SNI front end, nginx " . $t->nginx_version . " answers a handshake "
            . "without SNI despite ssl_reject_handshake (1.28 rejects it)", 1;
    }
}

sub check_record {
    my ($c, $rec) = @_;
    my $u = $c->{uri};
    ok($rec, "$u: access log line") or return;
    is($rec->{status}, $c->{status}, "$u: logged status");
    is($rec->{triage_cause}, $c->{cause}, "$u: \$triage_cause");
    is($rec->{triage_causes}, $c->{causes} // $c->{cause}, "$u: \$triage_causes");
    is($rec->{triage_errno}, $c->{errno}, "$u: \$triage_errno") if defined $c->{errno};
    like($rec->{triage_errno}, qr/^\d*$/, "$u: \$triage_errno numeric or empty");
    if (ref $c->{phase}) {
        like($rec->{triage_phase}, $c->{phase}, "$u: \$triage_phase");
    } else {
        is($rec->{triage_phase}, $c->{phase}, "$u: \$triage_phase");
    }
    if (ref $c->{peer}) {
        like($rec->{triage_peer}, $c->{peer}, "$u: \$triage_peer");
    } else {
        is($rec->{triage_peer}, $c->{peer}, "$u: \$triage_peer");
    }
    # where an address was tried, it is the one nginx reports last in $upstream_addr
    if ($c->{cause} ne '' && $rec->{triage_phase} !~ /^(select|resolve)$/
        && $rec->{upstream_addr} ne '')
    {
        my ($last) = $rec->{upstream_addr} =~ /([^,\s]+)\s*$/;
        is($rec->{triage_peer}, $last, "$u: \$triage_peer is the last of \$upstream_addr");
    }
    if ($c->{hint}) {
        like($rec->{triage_hint}, $c->{hint}, "$u: \$triage_hint");
    } elsif ($c->{cause} eq '') {
        is($rec->{triage_hint}, '', "$u: \$triage_hint empty");
    } else {
        isnt($rec->{triage_hint}, '', "$u: \$triage_hint set");
    }
}

sub check_error_log {
    my ($c) = @_;
    my $req = qr/request: "GET \Q$c->{uri}\E HTTP\/1\.1"/;
    for my $re (grep { defined } $c->{err}, $c->{err2}) {
        ok($t->wait_error_log(qr/$re.*$req/), "$c->{uri}: error.log proves the fault")
            or diag("error.log:\n" . $t->error_log_since(0));
    }
}

# A successful request leaves every variable empty.
{
    my $r = $t->http('main', '/ok');
    is($r->{status}, 200, '/ok: 200');
    my $rec = $t->find_access('access.log', \@F, request_uri => '/ok');
    check_record({ uri => '/ok', status => 200, cause => '', errno => '', phase => '', peer => '' }, $rec);
    is($rec && $rec->{upstream_addr}, $b{ok}->addr, '/ok: went to the OK backend');
}

# A location's if block: the location's proxy_pass answers, the if block's add_header applies,
# and a failure is classified as anywhere else.
for my $u ('/if_ok', '/if_runtime') {
    for my $q ('', '?x=1') {
        my $r = $t->http('main', "$u$q");
        is($r->{status}, 200, "$u$q: 200");
        is($r->{headers}{'x-if'}, $q ? '1' : undef, "$u$q: " . ($q ? "the if block's add_header" : 'no if block'));
    }
}
{
    my $r = $t->http('main', '/if_refused?x=1');
    is($r->{status}, 502, '/if_refused?x=1: 502');
    is($r->{headers}{'x-if'}, '1', "/if_refused?x=1: the if block's add_header");
    my $rec = $t->find_access('access.log', \@F, request_uri => '/if_refused?x=1');
    check_record({ uri => '/if_refused?x=1', status => 502, cause => 'connect_refused', errno => 111,
        phase => 'connect', peer => "127.0.0.1:$closed" }, $rec);
}

# A POST to a run-time upstream whose body comes 300 ms after its header (a slow client, or
# Expect: 100-continue): classified as one sent at once.
for my $late (0, 1) {
    my $c = $t->conn('main') or BAIL_OUT("connect: $!");
    my $body = 'x' x 100;
    my $head = "POST /runtime_post?late=$late HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n";
    if ($late) {
        syswrite($c->sock, $head);
        select(undef, undef, undef, 0.3);    # the fault itself: the body comes later
        syswrite($c->sock, $body);
    } else {
        syswrite($c->sock, $head . $body);
    }
    my $r = $c->read_response(timeout => 5);
    $c->close;
    is($r->{status}, 502, "/runtime_post?late=$late: 502");
    check_record({ uri => "/runtime_post?late=$late", status => 502, cause => 'connect_refused', errno => 111,
        phase => 'connect', peer => "127.0.0.1:$closed4" },
        $t->find_access('access.log', \@F, request_uri => "/runtime_post?late=$late"));
}
{
    my $j = eval { JSON::PP::decode_json($t->http('main', '/status')->{body}) } || {};
    my ($p) = @{ ($j->{upstreams}{"127.0.0.1:$closed4"} || {})->{peers} || [] };
    is($p && $p->{failures}{by_cause}{connect_refused}, 2, 'status: both POSTs counted');
}

# The SNI front end with the server name sent: it answers (so /sni_off's failure is the
# missing name's).
{
    my $r = $t->http('main', '/sni_on');
    is($r->{status}, 200, '/sni_on: 200 with proxy_ssl_server_name on');
    is($r->{body}, "sni ok\n", '/sni_on: the named server answered');
}

# The TLS backend with the right trust and name: verification passes (so the /tls_untrusted
# and /tls_wrongname failures below are the certificate's, not the setup's).
{
    my $r = $t->http('main', '/tls_verified');
    is($r->{status}, 200, '/tls_verified: 200 through a verified TLS connection');
    is($r->{body}, "tls ok\n", '/tls_verified: the TLS server answered');
}
# The chain with two intermediates, followed with the depth it needs (so /chain_too_long
# fails for the depth alone).
{
    my $r = $t->http('main', '/chain_followed');
    is($r->{status}, 200, '/chain_followed: 200 with proxy_ssl_verify_depth 2');
    is($r->{body}, "tls ok\n", '/chain_followed: the TLS server answered');
}

# All single-request faults concurrently (the timeouts overlap: ~1 s in total).
my %conn;
for my $c (@cases) {
    $conn{ $c->{uri} } = $t->conn('main') or BAIL_OUT("connect to nginx: $!");
    $conn{ $c->{uri} }->send_request(GET => $c->{uri});
}
for my $c (@cases) {
    my $r = $conn{ $c->{uri} }->read_response(timeout => 10);
    is($r->{status}, $c->{status}, "$c->{uri}: status $c->{status}") or diag($r->{error});
    like($r->{body}, $c->{body}, "$c->{uri}: upstream's own body passed through") if $c->{body};
    $conn{ $c->{uri} }->close;
}
for my $c (@cases) {
    check_record($c, $t->find_access('access.log', \@F, request_uri => $c->{uri}));
    check_error_log($c);
}

# All peers failed: both peers refuse and get marked failed (max_fails=1), the
# next request finds no live upstream.
{
    my $r1 = $t->http('main', '/dead?1');
    is($r1->{status}, 502, '/dead?1: 502');
    check_record({ uri => '/dead?1', status => 502, cause => 'connect_refused',
                   causes => 'connect_refused,connect_refused', errno => 111, phase => 'connect',
                   peer => qr/^127\.0\.0\.1:($closed|$closed2)$/ },
                 $t->find_access('access.log', \@F, request_uri => '/dead?1'));
    my $r2 = $t->http('main', '/dead?2');
    is($r2->{status}, 502, '/dead?2: 502');
    # no address was tried: the peer is empty
    check_record({ uri => '/dead?2', status => 502, cause => 'no_live_upstreams', errno => '',
                   phase => 'select', peer => '' },
                 $t->find_access('access.log', \@F, request_uri => '/dead?2'));
    ok($t->wait_error_log(qr/\[error\] .*no live upstreams while connecting to upstream.*"GET \/dead\?2 /),
       '/dead?2: error.log says "no live upstreams"');
}

# No live upstreams for other reasons than failed servers, each with its own hint: the one
# server at its max_conns (a request holds it), every server configured down.
{
    my $c = $t->conn('main') or BAIL_OUT("connect: $!");
    $c->send_request(GET => '/busy?1');
    ok(Triage::Harness::wait_until(sub { $b{busy}->connections >= 1 }, 5),
       '/busy?1 holds the one connection max_conns allows');
    my $r = $t->http('main', '/busy?2');
    is($r->{status}, 502, '/busy?2: 502');
    check_record({ uri => '/busy?2', status => 502, cause => 'no_live_upstreams', errno => '',
                   phase => 'select', peer => '', hint => qr/^every server of the upstream is at its max_conns/ },
                 $t->find_access('access.log', \@F, request_uri => '/busy?2'));
    is($c->read_response(timeout => 5)->{status}, 504, '/busy?1: its own read timeout');
    $c->close;

    $r = $t->http('main', '/all_down');
    is($r->{status}, 502, '/all_down: 502');
    check_record({ uri => '/all_down', status => 502, cause => 'no_live_upstreams', errno => '',
                   phase => 'select', peer => '',
                   hint => qr/^every server of the upstream is down: marked down in the configuration/ },
                 $t->find_access('access.log', \@F, request_uri => '/all_down'));
}
# /dead?2 above: both servers failed (max_fails), the cause's own hint
like(($t->find_access('access.log', \@F, request_uri => '/dead?2') || {})->{triage_hint} // '',
     qr{max_fails/fail_timeout}, '/dead?2: the hint names max_fails / fail_timeout');

# A run-time upstream is listed in the status under host:port, flagged dynamic.
{
    my $r = $t->http('main', '/status');
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    my $u = $j->{upstreams}{"127.0.0.1:$closed3"} || {};
    is($u->{dynamic}, JSON::PP::true, 'status: run-time upstream 127.0.0.1:<port> is dynamic');
    my ($p) = @{ $u->{peers} || [] };
    is($p && $p->{name}, "127.0.0.1:$closed3", 'status: its peer is the address tried');
    is($p && $p->{failures}{by_cause}{connect_refused}, 1, 'status: its refused try is counted once');
    is($p && $p->{last_failure}{errno}, 111, 'status: its last_failure errno is 111');

    # The unix sockets given through variables: run-time upstreams, named by their path
    # (as nginx names the implicit upstream of `proxy_pass http://unix:PATH:`).
    for my $s ([$perm_sock2, 'permission_denied', 13], [$missing_sock2, 'socket_not_found', 2]) {
        my ($sock, $cause, $errno) = @$s;
        my $u = $j->{upstreams}{$sock} || {};
        is($u->{dynamic}, JSON::PP::true, "status: run-time upstream $sock is dynamic");
        my ($p) = @{ $u->{peers} || [] };
        is($p && $p->{name}, "unix:$sock", "status: $sock: its peer is unix:$sock");
        is($p && $p->{failures}{by_cause}{$cause}, 1, "status: $sock: $cause counted once");
        is($p && $p->{last_failure}{errno}, $errno, "status: $sock: last_failure errno $errno");
    }
}

# A run-time upstream's failure inside the content handler, then error_page to a location
# with a configured upstream: each request's failure is counted, the later ones too (the
# module must not take the other location's upstream for this one's).
{
    is($t->http('main', "/var_nosocket_ep?$_")->{status}, 200, "/var_nosocket_ep?$_: 200 through error_page")
        for 1 .. 3;
    my $j = eval { JSON::PP::decode_json($t->http('main', '/status')->{body}) } || {};
    my ($p) = @{ ($j->{upstreams}{$missing_sock3} || {})->{peers} || [] };
    is($p && $p->{failures}{by_cause}{socket_not_found}, 3, 'status: each of the 3 failures counted');
}

# The full unix socket's peer: its status hint says what errno 11 means there.
{
    my $r = $t->http('main', '/status');
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    my ($p) = @{ ($j->{upstreams}{$full_sock} || {})->{peers} || [] };
    is($p && $p->{last_failure}{errno}, 11, 'status: the full socket\'s last failure is errno 11');
    like($p && $p->{hint} // '', qr/listen queue is full/, 'status: the full socket\'s hint');
    my ($late) = @{ ($j->{upstreams}{ $b{late}->addr } || {})->{peers} || [] };
    like($late && $late->{hint} // '', qr/its own request timeout most likely killed it/,
         'status: the late close\'s peer hint');
}

# The fallback answers a run-time unix socket's failure, met inside the content handler.
{
    my $r = $t->http('main', '/var_denied_fallback');
    is($r->{status}, 502, '/var_denied_fallback: 502');
    like($r->{headers}{'content-type'} // '', qr{^application/json}, '/var_denied_fallback: JSON');
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    is($j->{cause}, 'permission_denied', '/var_denied_fallback: cause permission_denied');
    is($j->{errno}, 13, '/var_denied_fallback: errno 13');
    is($j->{peer}, "unix:$perm_sock2", '/var_denied_fallback: peer is the socket');
}

# After the response header went out. A body cut short is a failure the client saw (a
# truncated 200): counted, in the body phase. A WebSocket that nginx closes after
# proxy_read_timeout of silence is how an idle tunnel ends: nginx logs "upstream timed out" and
# finalizes it as 504, but the client has its 101 and gets no 504; not a failure, or every
# idle WebSocket client would show as a gateway timeout.
{
    my $r = $t->http('main', '/cut');
    is($r->{status}, 200, '/cut: the 200 header went out before the cut');
    check_record({ uri => '/cut', status => 200, cause => 'premature_close', errno => '',
                   phase => 'read_body', peer => $b{cut}->addr },
                 $t->find_access('access.log', \@F, request_uri => '/cut'));
    ok($t->wait_error_log(qr/\[error\] .*upstream prematurely closed connection while reading upstream.*"GET \/cut /),
       '/cut: error.log says the body was cut');

    my $c = $t->conn('main') or BAIL_OUT("connect: $!");
    $c->send_request(GET => '/ws', headers => [Upgrade => 'websocket', Connection => 'Upgrade']);
    my $ws = $c->read_response(timeout => 5);
    is($ws->{status}, 101, '/ws: 101 Switching Protocols');
    # nginx closes the client's side when it ends the tunnel (its "upstream timed out" line
    # is at info level there: the client connection's)
    my $eof = Triage::Harness::wait_until(sub {
        IO::Select->new($c->sock)->can_read(0.2) or return 0;
        my $n = sysread($c->sock, my $buf, 4096);
        return defined $n && $n == 0;
    }, 5);
    ok($eof, '/ws: nginx ended the idle tunnel after proxy_read_timeout');
    $c->close;
    check_record({ uri => '/ws', status => 101, cause => '', errno => '', phase => '', peer => '' },
                 $t->find_access('access.log', \@F, request_uri => '/ws'));

    my $j = eval { JSON::PP::decode_json($t->http('main', '/status')->{body}) } || {};
    my ($cut) = @{ ($j->{upstreams}{ $b{cut}->addr } || {})->{peers} || [] };
    is($cut && $cut->{failures}{by_cause}{premature_close}, 1, 'status: the cut body is counted');
    is($cut && $cut->{last_failure}{phase}, 'read_body', 'status: ... in the body phase');
    my ($ws_peer) = @{ ($j->{upstreams}{ $b{ws}->addr } || {})->{peers} || [] };
    is($ws_peer && $ws_peer->{failures}{total}, 0, 'status: the idle WebSocket is no failure');
    is($ws_peer && $ws_peer->{responses}{'1xx'}, 1, 'status: ... its 101 is counted as a response');
    is((grep { $_->{path} eq '/ws' } @{ $j->{recent_failures} || [] }), 0,
       'status: no recent failure for /ws');
}

# nginx cannot write its temporary file (the temp path lost its permissions, or its disk is
# full): it logs the file's errno and cuts the answer. That errno is not the connection's (13
# here read as permission_denied, with the unix socket hint) and the backend is not at fault:
# `other`, the file's errno, and a hint about the temp path.
{
    # nginx makes its temp paths writable for the workers at start; taken away now
    chown 0, 0, $ptemp;
    chmod 0000, $ptemp;
    my $c = $t->conn('slow') or BAIL_OUT("connect: $!");
    setsockopt($c->sock, SOL_SOCKET, SO_RCVBUF, 4096);
    $c->send_request(GET => '/tempfile');
    ok($t->wait_error_log(qr/\[crit\] .*open\(\) "\Q$ptemp\E\/\d+" failed \(13: Permission denied\) while reading upstream.*"GET \/tempfile /, timeout => 10),
       '/tempfile: nginx could not open its temporary file');
    my $r = $c->read_response(timeout => 10);
    is($r->{status}, 200, '/tempfile: the 200 header went out first');
    cmp_ok(length($r->{body} // ''), '<', 4_000_000, '/tempfile: the answer is cut');
    $c->close;
    chmod 0755, $ptemp;
    check_record({ uri => '/tempfile', status => 200, cause => 'other', errno => 13,
                   phase => 'read_body', peer => $b{large}->addr,
                   hint => qr/^nginx could not write the response to a temporary file/ },
                 $t->find_access('access.log', \@F, request_uri => '/tempfile'));
    my $j = eval { JSON::PP::decode_json($t->http('main', '/status')->{body}) } || {};
    my ($p) = @{ ($j->{upstreams}{ $b{large}->addr } || {})->{peers} || [] };
    is($p && $p->{last_failure}{cause}, 'other', 'status: the temp file failure is `other`');
    like($p && $p->{hint} // '', qr/temp path/, 'status: its hint names the temp path');
}

# The client stops reading a large answer: nginx gives up on it after send_timeout ("client
# timed out") and closes the backend's connection. The backend did nothing wrong: no cause,
# and no failure of its peer.
{
    my $failures = sub {
        my $j = eval { JSON::PP::decode_json($t->http('main', '/status')->{body}) } || {};
        my ($p) = @{ ($j->{upstreams}{ $b{large}->addr } || {})->{peers} || [] };
        return $p && $p->{failures}{total};
    };
    my $before = $failures->();
    ok(defined $before, 'status: the large backend is listed');
    my $c = $t->conn('slow') or BAIL_OUT("connect: $!");
    setsockopt($c->sock, SOL_SOCKET, SO_RCVBUF, 4096);
    $c->send_request(GET => '/client_stalls');
    ok($t->wait_error_log(qr/client timed out \(110: Connection timed out\) while sending to client.*"GET \/client_stalls /, timeout => 10),
       '/client_stalls: nginx gave up on the client');
    $c->close;
    check_record({ uri => '/client_stalls', status => 200, cause => '', errno => '', phase => '', peer => '' },
                 $t->find_access('access.log', \@F, request_uri => '/client_stalls'));
    is($failures->(), $before, 'status: no failure counted for the backend');
}

# The backend's idle timeout runs out just as nginx reuses a kept-alive connection (the
# intermittent 502 of upstream keepalive in front of Node.js or gunicorn): the backend closes
# (FIN) or resets it, unanswered. nginx retries a GET on a new connection; a POST it may not
# retry gets the 502. The hint names the timeout to shorten, not a crash.
my $KA_HINT = qr/^the backend closed a kept-alive connection just as nginx reused it: make keepalive_timeout in the upstream block shorter/;
for my $v ([ 'fin', 'premature_close', '', qr/upstream prematurely closed connection/ ],
           [ 'rst', 'connection_reset', 104, qr/recv\(\) failed \(104: Connection reset by peer\)/ ])
{
    my ($k, $cause, $errno, $err) = @$v;
    my $r = $t->http('main', "/ka_$k/1");
    is($r->{status}, 200, "/ka_$k/1: 200 on a new connection, kept alive");
    $r = $t->http('main', "/ka_$k/2");
    is($r->{status}, 200, "/ka_$k/2: 200, nginx retried on a new connection");
    my $rec = $t->find_access('access.log', \@F, request_uri => "/ka_$k/2") || {};
    is($rec->{triage_causes}, $cause, "/ka_$k/2: \$triage_causes lists the reused connection's $cause");
    is($rec->{triage_cause}, '', "/ka_$k/2: \$triage_cause empty (the retry succeeded)");

    my $c = $t->conn('main') or BAIL_OUT("connect: $!");
    $c->send_request(POST => "/ka_$k/3", body => 'a=1');
    $r = $c->read_response(timeout => 5);
    $c->close;
    is($r->{status}, 502, "/ka_$k/3: a POST is not retried: 502");
    check_record({ uri => "/ka_$k/3", status => 502, cause => $cause, errno => $errno,
                   phase => 'read_header', peer => $b{"ka_$k"}->addr, hint => $KA_HINT },
                 $t->find_access('access.log', \@F, request_uri => "/ka_$k/3"));
    my $j = eval { JSON::PP::decode_json($r->{body}) } || {};
    like($j->{hint} // '', $KA_HINT, "/ka_$k/3: the fallback's details carry the same hint");
    ok($t->wait_error_log(qr/$err while reading response header from upstream.*"POST \/ka_$k\/3 /),
       "/ka_$k/3: error.log has nginx's line");
    # the status too: the peer's top cause, sharpened by its last failure
    my $st = eval { JSON::PP::decode_json($t->http('main', '/status')->{body}) } || {};
    my ($p) = @{ $st->{upstreams}{"ka_$k"}{peers} || [] };
    is($p && $p->{failures}{by_cause}{$cause}, 2, "status: ka_${k}'s peer counts both");
    like($p && $p->{hint} // '', $KA_HINT, "status: ka_${k}'s peer has the keepalive hint");
}


$t->stop;

# worker_connections exhaustion: requests held by a silent backend use up the
# worker's connections until one request cannot get an upstream connection.
# nginx answers 500 (ngx_http_upstream_connect: ngx_event_connect_peer() returns
# NGX_ERROR -> NGX_HTTP_INTERNAL_SERVER_ERROR), not 502.
{
    my $w = Triage::Harness->new(name => 'causes_proxy_wc');
    my $silent = $w->backend('silent');
    $w->start(<<'CONF', LOG_FORMAT => $LOG_FORMAT, SILENT => $silent->addr);
%%LOAD_MODULE%%
worker_processes 1;
events { worker_connections 7; }
http {
    %%LOG_FORMAT%%
    access_log logs/access.log triage;
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /hold { proxy_read_timeout 30s; proxy_pass http://%%SILENT%%; }
    }
}
CONF
    my (@held, $got);
    for my $i (1 .. 8) {
        my $c = $w->conn('main', timeout => 2) or last;
        push @held, $c;
        $c->send_request(GET => "/hold?$i");
        my $r = $c->read_response(timeout => 0.5);
        if ($r->{status}) { $got = [ $i, $r ]; last }
    }
    ok($got, 'a request failed once worker_connections ran out') or diag($w->error_log_since(0));
    if ($got) {
        my ($i, $r) = @$got;
        is($r->{status}, 500, "/hold?$i: nginx answers 500");
        check_record({ uri => "/hold?$i", status => 500, cause => 'worker_connections',
                       errno => '', phase => 'connect', peer => $silent->addr },
                     $w->find_access('access.log', \@F, request_uri => "/hold?$i"));
        ok($w->wait_error_log(qr/\[alert\] .*7 worker_connections are not enough while connecting to upstream/),
           'error.log: worker_connections are not enough');
    }
    $_->close for @held;
    $w->stop(timeout => 3);
}

done_testing;
