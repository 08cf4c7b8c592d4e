package Triage::Verdict;

# What a test of a failure asserts about one request: the $triage_* fields of its access log
# line and the error.log line that proves the fault (t/causes_*.t with real servers).
#
#   access_verdict($t, \@fields, '/app/x',
#       cause => 'premature_close' | qr/.../,   # is() for a string, like() for a pattern
#       errno => 104,                            # checked when the key is given
#       phase => 'read_header', peer => '127.0.0.1:9000', hint => qr/.../,
#       err   => qr/\[error\] .*upstream prematurely closed/,   # the error.log line
#       request => '/app/x HTTP/1.1"',           # what its request: "GET ..." goes on with (this default)
#       name  => '/app/x');                      # test label (default: the uri)
#
# The access log is logs/access.log, written with log_format_directive(..., @fields), where
# @fields holds request_uri, triage_cause, triage_errno, triage_phase, triage_peer, triage_hint.

use strict;
use warnings;

use Test::More;
use Exporter 'import';
our @EXPORT_OK = qw(access_verdict);

sub access_verdict {
    my ($t, $fields, $uri, %e) = @_;
    my $name = $e{name} // $uri;
    my $rec = $t->find_access('access.log', $fields, request_uri => $uri);
    ok($rec, "$name: access log line") or return;
    if (ref $e{cause}) {
        like($rec->{triage_cause}, $e{cause}, "$name: \$triage_cause $rec->{triage_cause}");
    } else {
        is($rec->{triage_cause}, $e{cause}, "$name: \$triage_cause $e{cause}");
    }
    is($rec->{triage_errno}, $e{errno},
       "$name: \$triage_errno " . ($e{errno} eq '' ? 'empty (none logged)' : $e{errno}))
        if exists $e{errno};
    is($rec->{triage_phase}, $e{phase}, "$name: \$triage_phase $e{phase}");
    is($rec->{triage_peer}, $e{peer}, "$name: \$triage_peer");
    like($rec->{triage_hint}, $e{hint}, "$name: \$triage_hint");
    my $request = $e{request} // qq{$uri HTTP/1.1"};
    ok($t->wait_error_log(qr/$e{err}.*request: "GET \Q$request\E/), "$name: error.log proves the fault");
    return $rec;
}

1;
