#!/usr/bin/perl
# Health-check directives: nginx_upstream_check_module's configuration (the seed block of
# the issue, verbatim) and every extension pass `nginx -t`; bad ones fail it with an
# nginx-style message naming the file and line. Every UCM type is accepted (tcp, http, https,
# ssl_hello, fastcgi, mysql, ajp); directives a type ignores get a warning.
#   Run alone: prove -v t/checks_config.t

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Triage::Harness;

my $t = Triage::Harness->new;
my $file = $t->conf_file;

my $tmpl = <<'CONF';
%%LOAD_MODULE%%
events { worker_connections 64; }
http {
    %%HTTP%%
    upstream backend {
        server 127.0.0.1:8080;
        server 127.0.0.1:8081;
        %%UPSTREAM%%
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / {
            proxy_pass http://backend;
        }
        location = /status {
            %%STATUS%%
        }
    }
}
CONF

sub conf {
    my (%v) = @_;
    return ($tmpl, HTTP => '', UPSTREAM => '', STATUS => 'check_status;', %v);
}

sub good {
    my ($name, $v) = @_;
    my ($rc, $out) = $t->test_config(conf(%$v));
    is($rc, 0, "$name: nginx -t succeeds") or diag("$out\nconfig:\n$t->{conf}");
    like($out, qr/test is successful/, "$name: test is successful");
    return $out;
}

# bad(name, {placeholder => directives}, qr/line marker/, qr/message/)
sub bad {
    my ($name, $v, $marker, $msg) = @_;
    my ($rc, $out) = $t->test_config(conf(%$v));
    my $line = $t->line_of($marker);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/nginx: \[emerg\] (?:$msg)[^\n]* in \Q$file\E:$line$/m,
         "$name: [emerg] message names $file:$line")
        or diag("output:\n$out\nconfig:\n$t->{conf}");
}

# The seed block (seed 000), exactly as written there.
good('seed block', { UPSTREAM => <<'SEED' });
    check interval=3000 rise=2 fall=2 timeout=1000 type=http;
    check_http_send "HEAD /health HTTP/1.0\r\n\r\n";
    check_http_expect_alive http_2xx http_3xx;
SEED

good('UCM defaults (check with one parameter)', { UPSTREAM => 'check type=tcp;' });

good('every directive and parameter', {
    HTTP     => 'check_shm_size 2m;',
    UPSTREAM => join("\n        ",
        'check interval=3s rise=1 fall=3 timeout=500ms default_down=false type=https port=8443 jitter=100 fail_open=on;',
        'check_http_send "GET /health HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n";',
        'check_http_expect_alive http_1xx http_2xx http_3xx http_4xx http_5xx;',
        'check_http_expect_status 200-299 301;',
        'check_http_expect_body ~ "ok|OK";',
        'check_keepalive_requests 10;',
        'check_ssl_name app.example;',
        'check_ssl_verify off;',
        'check_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;'),
});
good('caseless body regex, ssl_hello', { UPSTREAM => "check type=ssl_hello;\n        check_http_expect_body ~* \"ok\";" });
good('check_status csv', { UPSTREAM => 'check;', STATUS => 'check_status csv;' });
good('check_status json', { UPSTREAM => 'check type=http;', STATUS => 'check_status json;' });
good('check_status html', { UPSTREAM => 'check type=http;', STATUS => 'check_status html;' });
{
    my $out = good('check_http_send without check', { UPSTREAM => 'check_http_send "GET / HTTP/1.0\r\n\r\n";' });
    my $line = $t->line_of(qr/check_http_send/);
    like($out, qr/\[warn\] check_\* directives without "check" in upstream "backend" are ignored in \Q$file\E:$line/,
         'check_http_send without check: a warning names the file and line');
    $out = good('http settings with type=tcp', { UPSTREAM => "check type=tcp;\n        check_http_expect_alive http_2xx;" });
    like($out, qr/\[warn\] check_http_\* directives have no effect with type=tcp in upstream "backend"/,
         'http settings with type=tcp: a warning');
}

# type=fastcgi as UCM's documentation and tests write it
good('type=fastcgi with its parameters', { UPSTREAM => join("\n        ",
    'check interval=3000 rise=2 fall=3 timeout=1000 type=fastcgi default_down=false;',
    'check_fastcgi_param "REQUEST_METHOD" "GET";',
    'check_fastcgi_param "REQUEST_URI" "/redir";',
    'check_fastcgi_param "SCRIPT_FILENAME" "";',
    'check_http_expect_alive http_3xx;') });
{
    my $out = good('type=fastcgi with its default parameters', { UPSTREAM => 'check type=fastcgi;' });
    unlike($out, qr/\[warn\] check/, 'type=fastcgi alone: no check warning');
    $out = good('check_fastcgi_param with type=http',
        { UPSTREAM => "check type=http;\n        check_fastcgi_param SCRIPT_NAME /ping;" });
    like($out, qr/\[warn\] check_fastcgi_param has no effect with type=http in upstream "backend"/,
         'check_fastcgi_param with type=http: a warning');
    $out = good('check_http_send with type=fastcgi',
        { UPSTREAM => "check type=fastcgi;\n        check_http_send \"GET / HTTP/1.0\\r\\n\\r\\n\";" });
    like($out, qr/\[warn\] check_http_\* directives have no effect with type=fastcgi in upstream "backend"/,
         'check_http_send with type=fastcgi: a warning (the check sends FastCGI records)');
}
bad('check_fastcgi_param with an empty name', { UPSTREAM => "check type=fastcgi;\n        check_fastcgi_param \"\" x;" },
    qr/check_fastcgi_param ""/, qr/empty check_fastcgi_param name/);
bad('check_fastcgi_param without a value', { UPSTREAM => "check type=fastcgi;\n        check_fastcgi_param SCRIPT_NAME;" },
    qr/check_fastcgi_param SCRIPT_NAME/, qr/invalid number of arguments in "check_fastcgi_param" directive/);
# type=mysql and type=ajp as UCM's documentation writes them
for my $type (qw(mysql ajp)) {
    my $out = good("type=$type", { UPSTREAM => "check interval=3000 rise=2 fall=5 timeout=1000 type=$type;" });
    unlike($out, qr/\[warn\] check/, "type=$type alone: no check warning");
}
{
    my $out = good('check_http_send with type=mysql',
        { UPSTREAM => "check type=mysql;\n        check_http_send \"GET / HTTP/1.0\\r\\n\\r\\n\";" });
    like($out, qr/\[warn\] check_http_\* directives have no effect with type=mysql in upstream "backend"/,
         'check_http_send with type=mysql: a warning (the server speaks first; nothing is sent)');
    $out = good('check_keepalive_requests with type=fastcgi',
        { UPSTREAM => "check type=fastcgi;\n        check_keepalive_requests 10;" });
    like($out, qr/\[warn\] check_keepalive_requests has no effect with type=fastcgi \(each check opens a new connection\) in upstream "backend"/,
         'check_keepalive_requests with type=fastcgi: a warning');
    $out = good('check_keepalive_requests with type=http', { UPSTREAM => "check type=http;\n        check_keepalive_requests 10;" });
    unlike($out, qr/\[warn\] check/, 'check_keepalive_requests with type=http: no warning');
}
# forms UCM takes: its values in any case, check_http_expect_alive given twice (the classes
# add up), check_http_send given twice (the last one is sent)
good('UCM: default_down=TRUE, HTTP_2XX, expect_alive and http_send twice', { UPSTREAM => join("\n        ",
    'check interval=3000 rise=2 fall=5 timeout=1000 type=http default_down=TRUE;',
    'check_http_send "GET / HTTP/1.0\r\n\r\n";',
    'check_http_send "HEAD /health HTTP/1.0\r\n\r\n";',
    'check_http_expect_alive HTTP_2XX;',
    'check_http_expect_alive http_3xx;') });
bad('unknown type', { UPSTREAM => 'check type=gopher;' }, qr/type=gopher/,
    qr/unknown check type "gopher" \(supported: tcp, http, https, ssl_hello, fastcgi, mysql, ajp\)/);
bad('interval not a time', { UPSTREAM => 'check interval=soon;' }, qr/interval=soon/,
    qr/invalid parameter "interval=soon"/);
bad('rise=0', { UPSTREAM => 'check rise=0;' }, qr/rise=0/, qr/invalid parameter "rise=0"/);
bad('default_down=maybe', { UPSTREAM => 'check default_down=maybe;' }, qr/default_down/,
    qr/invalid parameter "default_down=maybe": it must be "true" or "false"/);
bad('unknown parameter', { UPSTREAM => 'check color=blue;' }, qr/color=blue/,
    qr/invalid parameter "color=blue": unknown parameter/);
bad('duplicate check', { UPSTREAM => "check;\n        check type=http;" }, qr/check type=http/,
    qr/"check" directive is duplicate/);
bad('check outside upstream', { STATUS => "check;\n            check_status;" }, qr/^ {12}check;/,
    qr/"check" directive is not allowed here/);
bad('expect_alive http_6xx', { UPSTREAM => "check type=http;\n        check_http_expect_alive http_6xx;" },
    qr/http_6xx/, qr/invalid value "http_6xx"/);
bad('expect_status 99', { UPSTREAM => "check type=http;\n        check_http_expect_status 200 99;" },
    qr/expect_status 200 99/, qr/invalid status "99"/);
bad('expect_status reversed range', { UPSTREAM => "check type=http;\n        check_http_expect_status 299-200;" },
    qr/299-200/, qr/invalid status "299-200"/);
bad('expect_body without ~', { UPSTREAM => "check type=http;\n        check_http_expect_body OK OK;" },
    qr/expect_body OK/, qr/invalid arguments \(expected: check_http_expect_body ~ "regex"/);
bad('expect_body bad regex', { UPSTREAM => "check type=http;\n        check_http_expect_body ~ \"(\";" },
    qr/expect_body ~/, qr/invalid check_http_expect_body regex/);
bad('check_ssl_verify maybe', { UPSTREAM => "check type=https;\n        check_ssl_verify maybe;" },
    qr/verify maybe/, qr/invalid value "maybe" in "check_ssl_verify" directive/);
{
    my $out = good('check_ssl_trusted_certificate without check_ssl_verify on',
        { UPSTREAM => "check type=https;\n        check_ssl_trusted_certificate /nonexistent.pem;" });
    like($out, qr/\[warn\] check_ssl_trusted_certificate has no effect without "check_ssl_verify on" in upstream "backend" in \S+nginx\.conf:\d+/,
         'check_ssl_trusted_certificate without check_ssl_verify on: a warning (the file is not read)');
}
bad('check_ssl_verify on without a trusted certificate',
    { UPSTREAM => "check type=https;\n        check_ssl_verify on;" }, qr/check type=https/,
    qr/no check_ssl_trusted_certificate for check_ssl_verify in upstream "backend"/);
bad('check_keepalive_requests 0', { UPSTREAM => "check;\n        check_keepalive_requests 0;" },
    qr/keepalive_requests 0/, qr/invalid value "0"/);
bad('check_shm_size in upstream', { UPSTREAM => "check;\n        check_shm_size 1m;" },
    qr/check_shm_size/, qr/"check_shm_size" directive is not allowed here/);
bad('check_shm_size abc', { HTTP => 'check_shm_size abc;', UPSTREAM => 'check;' },
    qr/check_shm_size abc/, qr/invalid value "abc"/);
bad('check_status xml', { UPSTREAM => 'check;', STATUS => 'check_status xml;' }, qr/check_status xml/,
    qr/invalid check format "xml" \(expected html, csv or json\)/);

done_testing;
