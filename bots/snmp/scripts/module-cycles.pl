#!/usr/bin/env perl
# Lists which modules of a crate each module uses (`crate::x` paths in code,
# tests included, comments left out; a name re-exported by lib.rs counts as
# its defining module, marked "via root"), then every pair of modules that
# use each other and every ring of them. Exits 1 if there is one. A module
# is `src/x.rs` with the files under `src/x/` (its submodules).
#
#   perl bots/snmp/scripts/module-cycles.pl [bots/snmp/src]
use strict;
use warnings;

my $src = shift // 'bots/snmp/src';
opendir(my $dh, $src) or die "cannot open $src: $!\n";
my @files = sort grep { /\.rs$/ && $_ ne 'lib.rs' && $_ ne 'main.rs' } readdir $dh;
closedir $dh;
my %is_mod = map { (my $m = $_) =~ s/\.rs$//; ($m => 1) } @files;

sub code_of {
    my ($path) = @_;
    open(my $fh, '<', $path) or die "cannot read $path: $!\n";
    my $text = "";
    while (my $line = <$fh>) {
        next if $line =~ m{^\s*//};           # comments and docs
        $line =~ s{"(?:\\.|[^"\\])*"}{""}g;   # strings
        $line =~ s{//.*}{};                    # trailing comments
        $text .= $line;
    }
    return $text;
}

# The root's re-exports: `pub use module::{A, B};` and `pub use module::A;`.
my %root;
my $lib = code_of("$src/lib.rs");
while ($lib =~ /pub\s+use\s+(\w+)::(\{[^}]*\}|\w+)/g) {
    my ($m, $names) = ($1, $2);
    $root{$_} = $m for grep { length } split /[\s{},]+/, $names;
}

my %uses;    # $uses{a}{b} = "how"
sub files_of {
    my ($dir) = @_;
    opendir(my $d, $dir) or return ();
    my @entries = sort grep { !/^\./ } readdir $d;
    closedir $d;
    return map { -d "$dir/$_" ? files_of("$dir/$_") : /\.rs$/ ? ("$dir/$_") : () } @entries;
}

for my $f (@files) {
    (my $me = $f) =~ s/\.rs$//;
    my $code = join '', map { code_of($_) } "$src/$f", files_of("$src/$me");
    my @firsts;
    while ($code =~ /\bcrate::(\{[^}]*\}|\w+)/g) {
        my $what = $1;
        if ($what =~ /^\{/) {
            push @firsts, map { (split /::/)[0] } grep { length } split /[\s{},]+/, $what;
        } else {
            push @firsts, $what;
        }
    }
    for my $name (@firsts) {
        my ($to, $how) = $is_mod{$name} ? ($name, 'direct')
                       : $root{$name}   ? ($root{$name}, "via root ($name)")
                       :                  (undef, undef);
        next unless defined $to && $to ne $me;
        $uses{$me}{$to} //= $how;
        $uses{$me}{$to} = $how if $how ne 'direct';    # say so if any use is via the root
    }
}

print "== uses\n";
for my $m (sort keys %is_mod) {
    my @to = map { $uses{$m}{$_} eq 'direct' ? $_ : "$_ [$uses{$m}{$_}]" } sort keys %{ $uses{$m} // {} };
    printf "%-12s -> %s\n", $m, @to ? join(', ', @to) : '(none)';
}

# Reachability, for rings.
my %reach;
for my $m (keys %is_mod) {
    my @todo = keys %{ $uses{$m} // {} };
    while (defined(my $n = shift @todo)) {
        next if $reach{$m}{$n}++;
        push @todo, keys %{ $uses{$n} // {} };
    }
}
my $bad = 0;
print "== pairs that use each other\n";
for my $a (sort keys %is_mod) {
    for my $b (sort keys %{ $uses{$a} // {} }) {
        next unless $a lt $b && $uses{$b}{$a};
        print "$a <-> $b\n";
        $bad = 1;
    }
}
print "== rings (modules that reach each other)\n";
my %done;
for my $a (sort keys %is_mod) {
    next if $done{$a};
    my @ring = grep { $_ eq $a || ($reach{$a}{$_} && $reach{$_}{$a}) } sort keys %is_mod;
    next unless @ring > 1 || $reach{$a}{$a};
    $done{$_} = 1 for @ring;
    print join(' , ', @ring), "\n";
    $bad = 1;
}
print $bad ? "cycles found\n" : "no cycles\n";
exit $bad;
