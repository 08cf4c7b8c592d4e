#!/usr/bin/env perl
# Where the module's extra instructions per request go, by function (self cost).
#
#   cgdiff.pl N TOP STOCK_N.out STOCK_2N.out MODULE_N.out MODULE_2N.out
#
# For every function: per-request self Ir of a side = (self(2N) - self(N)) / N, then
# extra = module - stock. Prints the TOP functions by |extra| (functions of the module itself
# are marked with *) with their calls per request on each side, and the sum of the module's
# own functions. Self costs from callgrind_annotate, call counts from the profiles' calls= lines.
use strict;
use warnings;

my ($n, $top, @files) = @ARGV;
die "usage: cgdiff.pl N TOP STOCK_N STOCK_2N MODULE_N MODULE_2N\n" unless @files == 4;

sub selfcost {
    my ($file) = @_;
    my %c;
    open(my $fh, '-|', 'callgrind_annotate', '--threshold=100', '--inclusive=no', '--auto=no', $file)
        or die "callgrind_annotate: $!\n";
    local $_;
    while (<$fh>) {
        next unless /^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*?)\s*$/;
        my ($ir, $where) = ($1, $2);
        next if $where =~ /PROGRAM TOTALS/;
        $ir =~ tr/,//d;
        $where =~ s/\s+\[[^\]]*\]$//;    # object file
        $where =~ s/^[^:]*://;           # source file (no ':' in paths here; "???" when unknown)
        $c{$where} += $ir;
    }
    close $fh;
    return \%c;
}

# calls into each function (by name), summed over all call sites
sub calls {
    my ($file) = @_;
    my (%name, %c, $cur);
    open(my $fh, '<', $file) or die "$file: $!\n";
    local $_;
    while (<$fh>) {
        if (/^(c?)fn=\((\d+)\)(?: (.*?))?\s*$/) {
            my ($is_call, $id, $nm) = ($1, $2, $3);
            $name{$id} = $nm if defined $nm;
            $cur = $is_call ? $name{$id} : undef;
        } elsif (/^calls=(\d+)/ && defined $cur) {
            $c{$cur} += $1;
            undef $cur;
        }
    }
    close $fh;
    return \%c;
}

my ($sn, $s2, $mn, $m2) = map { selfcost($_) } @files;
my ($csn, $cs2, $cmn, $cm2) = map { calls($_) } @files;
my %f = map { $_ => 1 } map { keys %$_ } $sn, $s2, $mn, $m2;
my %extra;
for my $k (keys %f) {
    my $s = (($s2->{$k} // 0) - ($sn->{$k} // 0)) / $n;
    my $m = (($m2->{$k} // 0) - ($mn->{$k} // 0)) / $n;
    $extra{$k} = [$m - $s, $s, $m];
}
my $own = 0;
$own += $extra{$_}[2] for grep { /nginx_triage/ } keys %extra;
my @k = sort { abs($extra{$b}[0]) <=> abs($extra{$a}[0]) || $a cmp $b } keys %extra;
printf "%8s %8s %8s %11s  %s\n", 'extra', 'stock', 'module', 'calls s/m',
    'function (per proxied request: self Ir, calls; * = module code)';
for my $k (@k[0 .. ($top < @k ? $top : @k) - 1]) {
    my ($e, $s, $m) = @{ $extra{$k} };
    last if abs($e) < 0.5;
    my $cs = (($cs2->{$k} // 0) - ($csn->{$k} // 0)) / $n;
    my $cm = (($cm2->{$k} // 0) - ($cmn->{$k} // 0)) / $n;
    printf "%+8.0f %8.0f %8.0f %5.1f/%-5.1f  %s%s\n", $e, $s, $m, $cs, $cm,
        ($k =~ /nginx_triage/ ? '* ' : '  '), $k;
}
printf "module's own functions (nginx_triage::*), self: %.1f Ir per request\n", $own;
