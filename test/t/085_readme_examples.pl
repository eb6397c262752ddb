# The README's Quickstart and its "Documenting pipelines in the database" example, run as a
# reader would paste them into psql: every ```sql block of those sections, in order, in one
# session that stops at the first error; then what the text says they do is checked.
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MedallionNode;

my $readme = slurp_file("$FindBin::Bin/../../README.md");

# the ```sql blocks of the section headed "## TITLE", joined
sub section_sql
{
	my ($title) = @_;
	my ($section) = $readme =~ /^## \Q$title\E\n(.*?)(?=^## |\z)/ms;
	die "README.md has no section \"$title\"" unless defined $section;
	my @blocks = $section =~ /^```sql\n(.*?)^```\n/msg;
	die "section \"$title\" has no sql block" unless @blocks;
	return join("\n", @blocks);
}

my $node = medallion_node('readme', workers => 16, quiet => 1);

# as pasted: one session, stopping at the first error
sub paste
{
	my ($title) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', section_sql($title),
		extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
	is($rc, 0, "the sql blocks of \"$title\" run as pasted") or diag($err);
}

paste('Quickstart');
is(sq(q{SELECT count(*) FROM bronze.crm_contacts WHERE _raw ? 'ssn'}), '0',
	'quickstart: the ssn key was never stored');
is(sq(q{SELECT string_agg(line_number || ' ' || error_type, ',') FROM medallion.dlq
		WHERE pipeline = 'bronze.crm_contacts'}),
	'5 parse', 'quickstart: the line cut short is in the DLQ');
is(sq(q{SELECT string_agg(contact_id || ' ' || email, ',' ORDER BY contact_id) FROM silver.contacts}),
	'1 a***@example.com,2 b***@example.com,3 c***@example.com',
	'quickstart: one row per contact, e-mails masked, the corrected dead letter loaded');
is(sq(q{SELECT updated_at FROM silver.contacts WHERE contact_id = 1}), '2026-11-02 08:30:00+00',
	'quickstart: the late, older version did not overwrite the newer one');
is(sq(q{SELECT string_agg(metric_date || ' ' || channel || ' ' || new_contacts || ' ' || conversions
		|| ' ' || total_revenue, ',' ORDER BY metric_date, channel) FROM gold.marketing_daily_metrics}),
	'2026-11-01 search 1 1 120.00,2026-11-01 social 1 1 35.50,2026-11-02 social 1 1 42.00',
	'quickstart: the gold model counts the late order of Nov 2');
is(sq(q{SELECT string_agg(kind || ' ' || (detail->'partitions')::text, ',' ORDER BY run_id)
		FROM medallion.runs WHERE pipeline = 'gold.marketing_daily_metrics' AND kind <> 'scheduled'}),
	'full [],incremental ["2026-11-02"]', 'quickstart: the second gold run recomputed that day only');
is(sq(q{SELECT schedule FROM medallion.pipelines WHERE name = 'silver.contacts'}), 'on_change',
	'quickstart: the silver pipeline is scheduled');

paste('Documenting pipelines in the database');
is(sq(q{SELECT obj_description('gold.contacts_by_country'::regclass, 'pg_class')}),
	'CRM contacts per country', 'documenting: the model\'s description is its table\'s comment');
is(sq(q{SELECT column_descriptions::text FROM medallion.lineage WHERE pipeline = 'gold.contacts_by_country'}),
	'{"contacts": "contacts whose country is this one", "country_code": "ISO 3166 alpha-2, upper case"}',
	'documenting: the lineage shows the column descriptions alter_pipeline set');
is(sq(q{SELECT col_description('silver.contacts'::regclass,
		(SELECT attnum FROM pg_attribute WHERE attrelid = 'silver.contacts'::regclass AND attname = 'email'))}),
	'masked: first letter and domain', 'documenting: alter_contract commented the column');
like(sq(q{SELECT detail FROM medallion.checklist('gold.contacts_by_country') WHERE item = 'documented'}),
	qr/2 of 2 columns described/, 'documenting: the checklist counts them, as the README says');

done_testing();
