#!/usr/bin/perl
# The configuration lint: `nginx -t` warns, with a stable code and the file:line of the
# directive concerned, about configurations that give 502/504 later. Each finding fires on
# the pitfall and stays silent when the configuration is right; the lint never fails
# `nginx -t`; triage_lint off / triage_lint_ignore silence it; the other modules' directive
# handlers it watches are given back, so reloads without the module stay safe.
#   Run alone: prove -v t/lint.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness qw(wait_until in_container);
use Triage::Backend;
use IO::Socket::INET;
use IO::Socket::IP;

my $t = Triage::Harness->new;
my $file = $t->conf_file;
my $ok  = $t->backend('ok');      # something listening on 127.0.0.1
my $ok2 = $t->backend('ok');
my $sockdir = $t->subdir('sock');
my $good_sock   = $t->backend('ok', unix => "$sockdir/good.sock")->addr;    # mode 0666
my $denied_sock = $t->backend('ok', unix => "$sockdir/denied.sock", mode => 0000)->addr;
my $missing_sock = "unix:$sockdir/missing.sock";
my $closed = Triage::Backend::closed_port();

# %%MAIN%%, %%HTTP%%, %%SERVER%%, %%LOCATION%% receive the directives under test.
my $tmpl = <<'CONF';
%%LOAD_MODULE%%
%%MAIN%%
events { worker_connections 64; }
http {
    %%HTTP%%
    server {
        listen 127.0.0.1:%%PORT_main%%;
        %%SERVER%%
        location / {
            %%LOCATION%%
        }
    }
}
CONF

my %DEFAULT = (MAIN => '', HTTP => '', SERVER => '', LOCATION => 'return 204;');

# The template's variables, with %%OK%% / %%OK2%% inside the values replaced by the
# backends' addresses (placeholders are expanded once, in the template only).
sub vars {
    my %v = (%DEFAULT, @_);
    for (values %v) {
        s/%%OK%%/$ok->addr/ge;
        s/%%OK2%%/$ok2->addr/ge;
    }
    return %v;
}

# lint($name, %vars) -> list of findings {code, msg, file, line}; checks that nginx -t
# succeeds whatever the lint found.
sub lint {
    my ($name, %v) = @_;
    my ($rc, $out) = $t->test_config($tmpl, vars(%v));
    is($rc, 0, "$name: nginx -t succeeds") or diag($out);
    like($out, qr/test is successful/, "$name: test is successful");
    my @f;
    for my $l (split /\n/, $out) {
        next unless $l =~ /^nginx: \[warn\] triage \[([a-z0-9-]+)\]: (.*) \((.+):(\d+)\)$/;
        push @f, { code => $1, msg => $2, file => $3, line => $4 };
    }
    my @any = $out =~ /(triage \[)/g;
    is(scalar @any, scalar @f, "$name: every lint line is well-formed") or diag($out);
    return @f;
}

# fires($name, \%vars, $code, qr/line marker/, qr/message/): exactly one finding, with that
# code, naming $file and the line of the marker.
sub fires {
    my ($name, $v, $code, $marker, $msg) = @_;
    my @f = lint($name, %$v);
    my $line = $t->line_of($marker);
    is(scalar @f, 1, "$name: one finding") or diag(explain \@f);
    my $f = $f[0] // {};
    is($f->{code}, $code, "$name: code [$code]");
    is("$f->{file}:$f->{line}", "$file:$line", "$name: names $file:$line")
        if defined $f->{file};
    like($f->{msg} // '', $msg, "$name: message");
}

# silent($name, \%vars): the right configuration gives no finding at all.
sub silent {
    my ($name, $v) = @_;
    my @f = lint($name, %$v);
    is(scalar @f, 0, "$name: no finding") or diag(explain \@f);
}

my $KA_UPSTREAM = "upstream app {\n        server %%OK%%;\n        keepalive 8;\n    }";

# --- keepalive-http10, keepalive-connection-header
fires('keepalive without proxy_http_version 1.1',
      { HTTP => $KA_UPSTREAM, LOCATION => "proxy_pass http://app;\n            proxy_set_header Connection \"\";" },
      'keepalive-http10', qr/proxy_pass http:\/\/app;/,
      qr/^upstream "app" has keepalive but location "\/" proxies to it without "proxy_http_version 1\.1" — keepalive is silently unused$/);
fires('keepalive without clearing Connection',
      { HTTP => $KA_UPSTREAM, LOCATION => "proxy_pass http://app;\n            proxy_http_version 1.1;" },
      'keepalive-connection-header', qr/proxy_pass http:\/\/app;/,
      qr/^upstream "app" has keepalive but location "\/" does not clear the Connection header .* add proxy_set_header Connection "";/);
# nginx inherits proxy_set_header only into levels that set none: the location's own header
# drops the server's Connection ""
fires('Connection "" lost by a location with its own proxy_set_header',
      { HTTP => $KA_UPSTREAM,
        SERVER => "proxy_http_version 1.1;\n        proxy_set_header Connection \"\";",
        LOCATION => "proxy_pass http://app;\n            proxy_set_header Host \$host;" },
      'keepalive-connection-header', qr/proxy_pass http:\/\/app;/, qr/Connection/);
silent('keepalive with proxy_http_version 1.1 and Connection ""',
      { HTTP => $KA_UPSTREAM,
        LOCATION => "proxy_pass http://app;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";" });
silent('keepalive settings inherited from server{}',
      { HTTP => $KA_UPSTREAM,
        SERVER => "proxy_http_version 1.1;\n        proxy_set_header Connection \"\";",
        LOCATION => "proxy_pass http://app;" });

# --- socket-missing, socket-permission
fires('fastcgi_pass to a missing socket', { LOCATION => "fastcgi_pass $missing_sock;" },
      'socket-missing', qr/fastcgi_pass unix:/,
      qr/^unix socket "\Q$sockdir\E\/missing\.sock" of fastcgi_pass in location "\/" does not exist — /);
silent('fastcgi_pass to an existing socket', { LOCATION => "fastcgi_pass $good_sock;" });

my $worker = $> == 0 ? 'nobody' : getpwuid($>);
fires('uwsgi_pass to a socket the worker user may not write', { LOCATION => "uwsgi_pass $denied_sock;" },
      'socket-permission', qr/uwsgi_pass unix:/,
      qr/^worker user "\Q$worker\E" cannot connect to unix socket "\Q$sockdir\E\/denied\.sock" of uwsgi_pass in location "\/": no write permission on the socket \(mode 0000, owner \d+:\d+\) — /);
silent('uwsgi_pass to a socket open to everyone', { LOCATION => "uwsgi_pass $good_sock;" });

SKIP: {
    skip 'the "user" directive takes effect only when nginx runs as root', 10 unless $> == 0;
    my @daemon = getpwnam('daemon') or skip 'no user "daemon"', 10;
    # a socket only its owner "daemon" may use (as php-fpm's listen.owner/listen.mode make it)
    my $own = $t->backend('ok', unix => "$sockdir/daemon.sock", mode => 0600)->addr;
    chown $daemon[2], $daemon[3], "$sockdir/daemon.sock" or die "chown: $!";
    fires('socket of another user, workers as nobody', { LOCATION => "proxy_pass http://$own:/;" },
          'socket-permission', qr/proxy_pass http:\/\/unix:/, qr/^worker user "nobody" cannot connect/);
    silent('socket of the user named by "user"',
           { MAIN => 'user daemon;', LOCATION => "proxy_pass http://$own:/;" });
}

# --- nothing-listening: a hint read from the kernel's table, never a connect
fires('proxy_pass to a loopback port nothing listens on',
      { LOCATION => "proxy_pass http://127.0.0.1:$closed;" },
      'nothing-listening', qr/proxy_pass http:\/\/127/,
      qr/^nothing listens on 127\.0\.0\.1:$closed \(proxy_pass in location "\/"\) at the moment — .*502 connect_refused/);
fires('upstream server on a loopback port nothing listens on',
      { HTTP => "upstream app {\n        server %%OK%%;\n        server 127.0.0.1:$closed;\n    }",
        LOCATION => 'proxy_pass http://app;' },
      'nothing-listening', qr/server 127\.0\.0\.1:$closed;/,
      qr/^nothing listens on 127\.0\.0\.1:$closed \(server "127\.0\.0\.1:$closed" of upstream "app"\)/);
fires('proxy_pass to localhost on a port nothing listens on',
      { LOCATION => "proxy_pass http://localhost:$closed;" },
      'nothing-listening', qr/proxy_pass http:\/\/localhost/,
      qr/^nothing listens on localhost:$closed \(127\.0\.0\.1 or \[::1\]\) \(proxy_pass in location "\/"\) at the moment/);
# in a container (this machine may be one) the finding adds that loopback is the container's
fires('nothing listening, and nginx in a container or not',
      { LOCATION => "proxy_pass http://127.0.0.1:$closed;" },
      'nothing-listening', qr/proxy_pass http:\/\/127/,
      in_container()
        ? qr/\(fine if it starts after nginx\); nginx runs in a container, where 127\.0\.0\.1 and ::1 are the container's own loopback: a backend on the host or in another container is not there; connect to another container by its service name \(Docker Compose, a Kubernetes Service\), to the host by host\.docker\.internal or its address, unless nginx shares the backend's network \(network_mode: host, the same pod\)/
        : qr/\(fine if it starts after nginx\)$/);
# the backend on the other address family's loopback (a listening socket of this test), on a
# port that is free on the first family (other processes of the machine use ports too)
sub listen_only_on {
    my ($host, $other) = @_;
    for (1 .. 50) {
        my $s = IO::Socket::IP->new(LocalHost => $host, LocalPort => 0, Listen => 1) or return;
        my $free = IO::Socket::IP->new(LocalHost => $other, LocalPort => $s->sockport, Listen => 1);
        # closed again as it goes out of scope: the port is free there (or that family has
        # no loopback: nothing can listen there either)
        return $s if $free || !$!{EADDRINUSE};
    }
    return;
}
SKIP: {
    my $v6 = listen_only_on('::1', '127.0.0.1')
        or skip "no IPv6 loopback on this machine ($@)", 7;
    my $p6 = $v6->sockport;
    fires('proxy_pass to 127.0.0.1, the backend on [::1] only',
          { LOCATION => "proxy_pass http://127.0.0.1:$p6;" },
          'nothing-listening', qr/proxy_pass http:\/\/127/,
          qr/^nothing listens on 127\.0\.0\.1:$p6 \(proxy_pass in location "\/"\), but something listens on \[::1\]:$p6: the backend listens on IPv6 only .*connect to \[::1\]:$p6, or make the backend listen on 127\.0\.0\.1/);
}
{
    my $v4 = listen_only_on('127.0.0.1', '::1') or die "listen on 127.0.0.1: $!";
    my $p4 = $v4->sockport;
    fires('fastcgi_pass to [::1], the backend on 127.0.0.1 only',
          { LOCATION => "fastcgi_pass [::1]:$p4;" },
          'nothing-listening', qr/fastcgi_pass \[::1\]/,
          qr/^nothing listens on \[::1\]:$p4 \(fastcgi_pass in location "\/"\), but something listens on 127\.0\.0\.1:$p4: the backend listens on IPv4 only/);
}
silent('proxy_pass to localhost where a backend listens',
       { LOCATION => 'proxy_pass http://localhost:' . $ok->port . ';' });
# nginx in front of itself: at nginx -t (and the first start) nothing listens there yet
silent('proxy_pass to an address a server of the same configuration listens on',
      { HTTP => "server {\n        listen 127.0.0.1:$closed;\n        return 204;\n    }",
        LOCATION => "proxy_pass http://127.0.0.1:$closed;" });
silent('proxy_pass to a unix socket a server of the same configuration listens on',
      { HTTP => "server {\n        listen unix:$sockdir/self.sock;\n        return 204;\n    }",
        LOCATION => "proxy_pass http://unix:$sockdir/self.sock:;" });
silent('upstream server on a port a server of the same configuration listens on (all addresses)',
      { HTTP => "upstream app {\n        server 127.0.0.1:$closed;\n    }\n"
              . "    server {\n        listen $closed;\n        return 204;\n    }",
        LOCATION => 'proxy_pass http://app;' });
silent('proxy_pass and upstream servers where backends listen',
      { HTTP => "upstream app {\n        server %%OK%%;\n        server %%OK2%%;\n    }",
        SERVER => "location /direct {\n            proxy_pass http://%%OK%%/;\n        }",
        LOCATION => 'proxy_pass http://app;' });
{
    my $before = $ok2->connections;
    lint('the check does not connect', LOCATION => 'proxy_pass http://%%OK2%%;');
    is($ok2->connections, $before, 'the check does not connect: the backend saw no connection');
}

# --- plain-to-tls-port: plain HTTP to a port that speaks TLS by convention
# (nothing listens on localhost:443 or :8443 either: that finding is silenced here)
fires('proxy_pass http:// to port 443',
      { LOCATION => "proxy_pass http://localhost:443;\n            triage_lint_ignore nothing-listening;" },
      'plain-to-tls-port', qr/proxy_pass http:\/\/localhost:443;/,
      qr/^proxy_pass in location "\/" sends plain http:\/\/ requests to port 443, which normally speaks TLS — use https:\/\/ /);
fires('an upstream server on port 8443 behind proxy_pass http://',
      { HTTP => "upstream api {\n        triage_lint_ignore nothing-listening;\n        server localhost:8443;\n    }",
        LOCATION => 'proxy_pass http://api;' },
      'plain-to-tls-port', qr/proxy_pass http:\/\/api;/,
      qr/to port 8443 \(server "localhost:8443" of upstream "api"\)/);
silent('proxy_pass https:// to port 443',
       { LOCATION => "proxy_pass https://localhost:443;\n            triage_lint_ignore nothing-listening;" });

# --- timeout-below-check and max-fails-with-check against an active check (`check`)
my $CHECKED = "upstream app {\n        server %%OK%%%%MF%%;\n        check interval=3000 rise=2 fall=2 timeout=%%CT%% type=tcp;\n    }";
sub checked { my ($mf, $ct) = @_; (my $u = $CHECKED) =~ s/%%MF%%/$mf/; $u =~ s/%%CT%%/$ct/; $u }
fires('proxy_read_timeout below the check timeout',
      { HTTP => checked('', 8000), LOCATION => "proxy_pass http://app;\n            proxy_read_timeout 6s;" },
      'timeout-below-check', qr/proxy_read_timeout 6s/,
      qr/^proxy_read_timeout 6s \(in effect in location "\/"\) is below the active check timeout \S+ of upstream "app" \(\Q$file\E:\d+\) — requests give up \(504\)/);
silent('proxy_read_timeout above the check timeout',
       { HTTP => checked('', 1000), LOCATION => "proxy_pass http://app;\n            proxy_read_timeout 6s;" });
fires('max_fails on a server of a checked upstream',
      { HTTP => checked(' max_fails=3', 1000), LOCATION => 'proxy_pass http://app;' },
      'max-fails-with-check', qr/max_fails=3/,
      qr/^server "[^"]+" of upstream "app" sets max_fails\/fail_timeout and the upstream has an active check \(\Q$file\E:\d+\) — two ejection mechanisms conflict/);
silent('max_fails=0 on a server of a checked upstream',
       { HTTP => checked(' max_fails=0', 1000), LOCATION => 'proxy_pass http://app;' });

# --- timeout-below-check without an active check: the 5 s floor
fires('proxy_read_timeout under 5 s',
      { SERVER => 'proxy_read_timeout 3s;', LOCATION => 'proxy_pass http://%%OK%%;' },
      'timeout-below-check', qr/proxy_read_timeout 3s/,
      qr/^proxy_read_timeout 3s \(in effect in location "\/"\) is under 5 s — every response slower than that becomes 504 read_timeout/);
silent('proxy_read_timeout of 5 s', { SERVER => 'proxy_read_timeout 5s;', LOCATION => 'proxy_pass http://%%OK%%;' });

# --- all-backup
fires('every server backup or down',
      { HTTP => "upstream app {\n        server %%OK%% down;\n        server %%OK2%% backup;\n    }",
        LOCATION => 'proxy_pass http://app;' },
      'all-backup', qr/upstream app \{/,
      qr/^every server of upstream "app" is backup or down — only the backups ever get requests; remove "down"/);
silent('one server takes traffic',
      { HTTP => "upstream app {\n        server %%OK%%;\n        server %%OK2%% backup;\n    }",
        LOCATION => 'proxy_pass http://app;' });

# --- several at once, in configuration order; the lint never fails nginx -t
my %bad = (
    HTTP => "upstream app {\n        server %%OK%% down;\n        server 127.0.0.1:$closed backup;\n        keepalive 4;\n    }",
    SERVER => "location /php {\n            fastcgi_pass $missing_sock;\n        }",
    LOCATION => 'proxy_pass http://app;');
{
    my @f = lint('a config with many pitfalls', %bad);
    is(join(' ', map { $_->{code} } @f),
       'all-backup nothing-listening socket-missing keepalive-http10 keepalive-connection-header',
       'a config with many pitfalls: all found, in configuration order');
}

# --- past 20 findings of one kind, one line counts the rest: a configuration started before
#     its 25 backends logs 20 paragraphs and a count, not 25 paragraphs at each start/reload
{
    my @ports = map { Triage::Backend::closed_port() } 1 .. 25;
    my $ups = join "\n    ", map { "upstream b$_ { server 127.0.0.1:$ports[$_ - 1]; }" } 1 .. 25;
    my @f = lint('25 upstreams nothing listens for', HTTP => $ups);
    my @nl = grep { $_->{code} eq 'nothing-listening' } @f;
    is(scalar @nl, 21, '25 upstreams nothing listens for: 21 lines');
    like($nl[$_]{msg}, qr/^nothing listens on 127\.0\.0\.1:$ports[$_] \(server "127\.0\.0\.1:$ports[$_]" of upstream "b@{[$_ + 1]}"\)/,
        "finding @{[$_ + 1]}: upstream b@{[$_ + 1]}") for 0, 19;
    is($nl[20]{msg}, '5 more findings of this kind from here on, not shown one by one (the first 20 are); '
        . '"triage_lint_ignore nothing-listening" where they are silences them',
        'the 21st counts the other 5');
    is("$nl[20]{file}:$nl[20]{line}", "$file:" . $t->line_of(qr/upstream b21 /),
        'and names where the first of them is (upstream b21)');
}

# --- triage_lint off, triage_lint_ignore
silent('triage_lint off', { %bad, HTTP => "triage_lint off;\n    $bad{HTTP}" });
{
    my @f = lint('ignored at http level',
                 %bad, HTTP => "triage_lint_ignore all-backup socket-missing;\n    $bad{HTTP}");
    is(join(' ', map { $_->{code} } @f),
       'nothing-listening keepalive-http10 keepalive-connection-header',
       'http-level ignore silences upstream and location findings');
    @f = lint('ignored in upstream',
              %bad, HTTP => "upstream app {\n        triage_lint_ignore nothing-listening all-backup keepalive-http10;\n        server %%OK%% down;\n        server 127.0.0.1:$closed backup;\n        keepalive 4;\n    }");
    is(join(' ', map { $_->{code} } @f), 'socket-missing keepalive-connection-header',
       'upstream-level ignore silences that upstream\'s findings');
    @f = lint('ignored in server', %bad, SERVER => "triage_lint_ignore keepalive-connection-header;\n        $bad{SERVER}");
    is(join(' ', map { $_->{code} } @f), 'all-backup nothing-listening socket-missing keepalive-http10',
       'server-level ignore reaches its locations');
    @f = lint('ignored in one location',
              %bad, LOCATION => "proxy_pass http://app;\n            triage_lint_ignore socket-missing keepalive-http10 keepalive-connection-header;");
    is(join(' ', map { $_->{code} } @f), 'all-backup nothing-listening socket-missing',
       'location-level ignore silences that location only');
}

# --- an included file is named with its own line
{
    my $inc = "$t->{prefix}/conf/app.conf";
    open my $fh, '>', $inc or die "$inc: $!";
    print $fh "# app\nlocation /inc {\n    proxy_read_timeout 1s;\n    proxy_pass http://" . $ok->addr . ";\n}\n";
    close $fh;
    my @f = lint('finding in an included file', SERVER => "include $inc;");
    is(scalar @f, 1, 'finding in an included file: one finding');
    is(($f[0]{file} // '') . ':' . ($f[0]{line} // ''), "$inc:3", 'finding names the included file and line');
}

# --- bad input fails nginx -t with an nginx-style message
sub bad {
    my ($name, $v, $marker, $msg) = @_;
    my ($rc, $out) = $t->test_config($tmpl, vars(%$v));
    my $line = $t->line_of($marker);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/nginx: \[emerg\] $msg[^\n]* in \Q$file\E:$line$/m, "$name: [emerg] names $file:$line")
        or diag($out);
}
bad('unknown code', { SERVER => 'triage_lint_ignore keepalive-http10 keepalive;' }, qr/triage_lint_ignore/,
    qr/unknown lint code "keepalive" in "triage_lint_ignore" \(known: keepalive-http10, .*all-backup\)/);
bad('triage_lint_ignore without codes', { LOCATION => 'triage_lint_ignore;' }, qr/triage_lint_ignore/,
    qr/invalid number of arguments in "triage_lint_ignore" directive/);
bad('triage_lint in server', { SERVER => 'triage_lint off;' }, qr/triage_lint off/,
    qr/"triage_lint" directive is not allowed here/);
bad('triage_lint with a bad value', { HTTP => 'triage_lint maybe;' }, qr/triage_lint maybe/,
    qr/invalid value "maybe" in "triage_lint" directive, it must be "on" or "off"/);
bad('duplicate triage_lint', { HTTP => "triage_lint on;\n    triage_lint off;" }, qr/triage_lint off/,
    qr/"triage_lint" directive is duplicate/);

# --- start and reload log the findings; reloads without the module stay safe
{
    my %run = (MAIN => 'worker_processes 1;',
               LOCATION => "proxy_pass http://%%OK%%;\n            proxy_read_timeout 2s;");
    $t->start($tmpl, vars(%run));
    my $line = $t->line_of(qr/proxy_read_timeout 2s/);
    ok($t->wait_error_log(qr/\[warn\] .*triage \[timeout-below-check\]: .*\(\Q$file\E:$line\)$/),
       'start: the finding is in error.log');
    is($t->http('main', '/')->{status}, 200, 'start: serving');

    my $mark = $t->error_log_mark;
    $t->reload($tmpl, vars(%run, LOCATION => "proxy_pass http://%%OK%%;\n            proxy_read_timeout 1s;"));
    like($t->error_log_since($mark), qr/triage \[timeout-below-check\]: proxy_read_timeout 1s/,
         'reload: the new configuration is linted');

    # without load_module the library is unloaded; the handlers it wrapped were given back,
    # so the next reloads parse proxy_pass & co. as usual
    (my $plain = $tmpl) =~ s/%%LOAD_MODULE%%//;
    $t->reload($plain, vars(%run));
    is($t->http('main', '/')->{status}, 200, 'reload without the module: serving');
    $mark = $t->error_log_mark;
    $t->reload($plain, vars(%run, LOCATION => "proxy_pass http://%%OK2%%;"));
    is($t->http('main', '/')->{status}, 200, 'second reload without the module: serving');
    unlike($t->error_log_since($mark), qr/triage \[/, 'no lint without the module');
    $t->reload($tmpl, vars(%run));
    is($t->http('main', '/')->{status}, 200, 'module loaded again: serving');

    # a reload that fails half-way through http{} leaves nothing wrapped behind
    eval { $t->reload($tmpl, vars(%run, LOCATION => "proxy_pass http://%%OK%%;\n            bogus_directive;")) };
    like($@, qr/unknown directive "bogus_directive"/, 'broken reload rejected');
    $t->reload($plain, vars(%run));
    $t->reload($plain, vars(%run, LOCATION => "proxy_pass http://%%OK2%%;"));
    is($t->http('main', '/')->{status}, 200, 'after a broken reload, reloads without the module: serving');
    $t->stop;
}

done_testing;
