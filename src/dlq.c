/*-------------------------------------------------------------------------
 *
 * dlq.c
 *	  Dead-letter queue writes.
 *
 * A record that cannot be processed is never dropped: it lands here with
 * the reason, exactly as it came, and where it came from.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "medallion.h"

#define DLQ_NARGS 12

/*
 * Adds one row to medallion.dlq, as the catalog owner.
 */
void
medallion_dlq_add(const MedallionDlqEntry *e)
{
	static const char *insert_sql =
		"INSERT INTO medallion.dlq (pipeline, original_payload, error_message, "
		"error_type, sqlstate, field, source_table, source_seq, pipeline_run_id, "
		"batch_id, file_name, line_number) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
	Oid			argtypes[DLQ_NARGS] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, TEXTOID, INT8OID};
	Datum		values[DLQ_NARGS];
	char		nulls[DLQ_NARGS];
	const char *texts[] = {e->pipeline, NULL, e->error_message, e->error_type,
		e->sqlstate, e->field, e->source_table};
	MedallionUserContext save;
	int			ret;
	int			i;

	memset(nulls, ' ', sizeof(nulls));
	for (i = 0; i < (int) lengthof(texts); i++)
	{
		if (i == 1)
			continue;
		if (texts[i])
			values[i] = CStringGetTextDatum(texts[i]);
		else
			nulls[i] = 'n';
	}
	if (e->payload)
		values[1] = PointerGetDatum(cstring_to_text_with_len(e->payload, e->payload_len));
	else
		nulls[1] = 'n';

	values[7] = Int64GetDatum(e->source_seq);
	nulls[7] = e->source_seq > 0 ? ' ' : 'n';
	values[8] = Int64GetDatum(e->run_id);
	nulls[8] = e->run_id > 0 ? ' ' : 'n';
	if (e->batch_id)
		values[9] = CStringGetTextDatum(e->batch_id);
	else
		nulls[9] = 'n';
	if (e->file_name)
		values[10] = CStringGetTextDatum(e->file_name);
	else
		nulls[10] = 'n';
	values[11] = Int64GetDatum(e->line_number);
	nulls[11] = e->line_number > 0 ? ' ' : 'n';

	medallion_become_user(medallion_catalog_owner(), &save);
	SPI_connect();
	ret = SPI_execute_with_args(insert_sql, DLQ_NARGS, argtypes, values, nulls,
								false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not write to medallion.dlq: SPI error %d", ret);
	SPI_finish();
	medallion_restore_user(&save);
}
