#!/usr/bin/perl
# test/bench/gen_ndjson.pl — deterministic CRM-contact NDJSON for the benchmarks.
#
#   gen_ndjson.pl LINES OUT_CLEAN [OUT_BAD [OUT_RETRY]]
#
# OUT_CLEAN: LINES contact objects (~150-200 bytes, nested objects, arrays, non-ASCII
# text, a few escaped strings), one per line.
# OUT_BAD:   the same file where every line N with N % 100 == 50 (exactly LINES/100 of
# them when LINES is a multiple of 100) is replaced by a malformed one, cycling through
# ten kinds that the JSON grammar check catches (truncated, unbalanced, trailing comma,
# unquoted key, top-level array, single quotes, invalid UTF-8, \u0000, bare scalar,
# not JSON at all).  Prints the number of bad lines on stdout.
# OUT_RETRY: the clean file with ONE line that is valid JSON grammar but that jsonb
# refuses (a number out of numeric's range, 1e200000): it exercises ingest's fallback path.
use strict;
use warnings;

my ($lines, $out_clean, $out_bad, $out_retry) = @ARGV;
die "usage: $0 LINES OUT_CLEAN [OUT_BAD [OUT_RETRY]]\n" unless $lines && $out_clean;

srand(20240601);
my @first = ('José', 'Zoë', 'Łukasz', 'Søren', 'Ana', 'John', 'Mei', 'François', 'Björn',
             'Chloé', 'Dmitrij', '美玲', 'Ahmet', 'Núria', 'Emma', 'Liam', 'Olivia', 'Noah',
             'Saanvi', 'Ingrid', 'Mateus', 'Aoife', 'Jürgen', 'Renée');
my @first_ascii = qw(jose zoe lukasz soren ana john mei francois bjorn chloe dmitrij meiling
                     ahmet nuria emma liam olivia noah saanvi ingrid mateus aoife jurgen renee);
my @last = ('Müller', 'García', 'Nowak', 'Østergaard', 'Smith', 'Dubois', '王', 'Yılmaz',
            'Kowalski', 'Jones', 'Brown', 'Ferreira', 'Šimek', 'Okafor', 'Tanaka', 'Rossi');
my @last_ascii = qw(muller garcia nowak ostergaard smith dubois wang yilmaz kowalski jones
                    brown ferreira simek okafor tanaka rossi);
my @cities = (['München', 'DE'], ['São Paulo', 'BR'], ['Kraków', 'PL'], ['Zürich', 'CH'],
              ['London', 'GB'], ['New York', 'US'], ['Tōkyō', 'JP'], ['Malmö', 'SE'],
              ['Paris', 'FR'], ['Lisboa', 'PT'], ['Austin', 'US'], ['Dublin', 'IE']);
my @domains = qw(example.com example.org mail.test corp.example);
my @tags = qw(vip newsletter b2b churn-risk trial partner);
my @notes = ('prefers \"email\"', 'call back\nafter 5pm', 'VIP \u2013 renewal', 'ok');

sub contact {
    my ($n) = @_;
    my $f = int(rand(@first));
    my $l = int(rand(@last));
    my $c = $cities[int(rand(@cities))];
    my $email = sprintf('%s.%s%d@%s', $first_ascii[$f], $last_ascii[$l], $n % 1000,
                        $domains[$n % @domains]);
    my @t = map { $tags[int(rand(@tags))] } 1 .. int(rand(3));
    my $s = sprintf('{"id":%d,"email":"%s","name":{"first":"%s","last":"%s"},'
                    . '"address":{"city":"%s","cc":"%s"},"tags":[%s],"score":%.1f,'
                    . '"updated":"2024-%02d-%02d"',
                    $n, $email, $first[$f], $last[$l], $c->[0], $c->[1],
                    join(',', map { "\"$_\"" } @t), rand(100),
                    1 + int(rand(12)), 1 + int(rand(28)));
    $s .= sprintf(',"phone":"+%d %d %07d"', 1 + int(rand(98)), 10 + int(rand(89)),
                  int(rand(10_000_000))) if rand() < 0.3;
    $s .= ',"note":"' . $notes[int(rand(@notes))] . '"' if rand() < 0.05;
    return $s . '}';
}

sub malformed {
    my ($s, $k) = @_;
    return substr($s, 0, int(length($s) / 2)) if $k == 0;      # truncated
    return substr($s, 0, -1) if $k == 1;                        # missing closing brace
    return substr($s, 0, -1) . ',}' if $k == 2;                 # trailing comma
    return $s =~ s/"email":/email:/r if $k == 3;                # unquoted key
    return "[$s]" if $k == 4;                                   # an array, not an object
    return $s =~ tr/"/'/r if $k == 5;                           # single quotes
    return $s =~ s/"cc":"/"cc":"\xff/r if $k == 6;              # invalid UTF-8
    return $s =~ s/"email":"/"email":"\\u0000/r if $k == 7;     # \u0000
    return '"just a string"' if $k == 8;                        # bare scalar
    return 'not json at all';                                   # garbage
}

open(my $clean, '>:raw', $out_clean) or die "$out_clean: $!\n";
my ($bad, $retry);
if ($out_bad) { open($bad, '>:raw', $out_bad) or die "$out_bad: $!\n"; }
if ($out_retry) { open($retry, '>:raw', $out_retry) or die "$out_retry: $!\n"; }
my $nbad = 0;
my $retry_line = int($lines / 2) + 7;
for my $n (1 .. $lines) {
    my $s = contact($n);
    print $clean $s, "\n";
    if ($bad) {
        if ($n % 100 == 50) { print $bad malformed($s, $nbad % 10), "\n"; $nbad++; }
        else { print $bad $s, "\n"; }
    }
    if ($retry) {
        print $retry ($n == $retry_line ? $s =~ s/"score":[0-9.]+/"score":1e200000/r : $s), "\n";
    }
}
close($clean) or die "$out_clean: $!\n";
if ($bad) { close($bad) or die "$out_bad: $!\n"; }
if ($retry) { close($retry) or die "$out_retry: $!\n"; }
print "$nbad\n";
