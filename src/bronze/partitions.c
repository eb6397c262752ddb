/*-------------------------------------------------------------------------
 *
 * partitions.c
 *	  The day partitions of bronze tables: made ahead, created on demand, and
 *	  recognised by name.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "medallion.h"
#include "bronze/bronze.h"

/* Advisory-lock class serialising partition creation per bronze table. */
#define MEDALLION_LOCK_PARTITIONS 0x4d45

/* Most days a writer other than the table's owner makes ahead. */
#define MEDALLION_PREMAKE_CAP 31

/*
 * The UTC day (days since 2000-01-01) of a timestamp.
 */
static int
utc_day(TimestampTz ts)
{
	int64		day = ts / USECS_PER_DAY;

	if (ts < 0 && ts % USECS_PER_DAY != 0)
		day--;
	return (int) day;
}

/*
 * Formats a UTC day as YYYYMMDD (compact) or as a timestamptz literal.
 */
static char *
format_day(int day, bool literal)
{
	int			y,
				m,
				d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	if (literal)
		return psprintf("'%04d-%02d-%02d 00:00:00+00'", y, m, d);
	return psprintf("%04d%02d%02d", y, m, d);
}

/*
 * Creates and attaches the partition of one day.  The caller is inside the
 * gateway as the table's owner and holds the table's partition lock.  The
 * CHECK (which lets ATTACH skip its scan) qualifies its operators and casts:
 * it is evaluated for every later writer, whoever that is.
 */
static void
create_day_partition(const BronzeTarget *target, int day)
{
	StringInfoData sql;
	char	   *partname = psprintf("%s_p%s", target->relname, format_day(day, false));
	const char *qparent = medallion_qualified_relname(target->relid);
	const char *qpart = quote_qualified_identifier("bronze", partname);
	char	   *lo = format_day(day, true);
	char	   *hi = format_day(day + 1, true);

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS);"
					 "ALTER TABLE %s ADD CONSTRAINT medallion_bound CHECK "
					 "(_ingested_at OPERATOR(pg_catalog.>=) %s::pg_catalog.timestamptz "
					 "AND _ingested_at OPERATOR(pg_catalog.<) %s::pg_catalog.timestamptz);"
					 "ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s);"
					 "CREATE TRIGGER medallion_append_only_truncate BEFORE TRUNCATE ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION medallion.bronze_append_only();"
					 "CREATE TRIGGER medallion_landed AFTER INSERT ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION medallion.bronze_landed();",
					 qpart, qparent, qpart, lo, hi, qparent, qpart, lo, hi, qpart, qpart);
	medallion_bronze_exec_ddl(sql.data);
}

/*
 * Whether the day's partition of the table exists: a partition of that name
 * in bronze.  (Checking its parent would cost an index scan per day, per
 * captured row; a name another role took only makes the creation fail.)
 */
static bool
day_partition_exists(const BronzeTarget *target, const char *partname, Oid nsp)
{
	Oid			relid = get_relname_relid(partname, nsp);

	return OidIsValid(relid) && get_rel_relispartition(relid);
}

/*
 * Makes sure the partitions of today and the next medallion.premake_days days
 * exist.  "Today" is the UTC day of the transaction start, the value the
 * _ingested_at default (now()) takes.  The partitions are created as the
 * table's owner, so a writer that is not the owner (the setting is the
 * session's) premakes at most MEDALLION_PREMAKE_CAP days.
 */
void
medallion_bronze_ensure_partitions(const BronzeTarget *target)
{
	Oid			nsp = get_namespace_oid("bronze", false);
	int			today = utc_day(GetCurrentTransactionStartTimestamp());
	int			ahead = medallion_premake_days;
	int			day;
	bool		locked = false;
	MedallionGateway gw;
	LOCKTAG		tag;

	if (ahead > MEDALLION_PREMAKE_CAP && !has_privs_of_role(GetUserId(), target->owner))
		ahead = MEDALLION_PREMAKE_CAP;

	for (day = today; day <= today + ahead; day++)
	{
		char	   *partname = psprintf("%s_p%s", target->relname, format_day(day, false));

		if (day_partition_exists(target, partname, nsp))
			continue;

		if (!locked)
		{
			/*
			 * Serialise creators; then look again at what they committed.
			 * The rows being written need today's partition only: wait for
			 * a concurrent creator just for that one.  A later day being
			 * created by another transaction, whose commit may be far off,
			 * is left to it: waiting would stall this writer for nothing,
			 * and deadlock with a creator that waits for us on another
			 * table.
			 */
			SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, target->relid, 0,
								 MEDALLION_LOCK_PARTITIONS);
			if (LockAcquire(&tag, ExclusiveLock, false, day != today) == LOCKACQUIRE_NOT_AVAIL)
				break;
			AcceptInvalidationMessages();
			locked = true;
			medallion_gateway_enter(target->owner, &gw);
			/* one stretch of own DDL: the snapshots are refreshed once, at its end */
			medallion_own_ddl_begin();
			if (day_partition_exists(target, partname, nsp))
				continue;
		}
		create_day_partition(target, day);
	}
	if (locked)
	{
		medallion_gateway_leave(&gw);
		medallion_own_ddl_end();
	}
}

/*
 * The UTC day a partition of bronze.<parent> holds, from its name
 * "<parent>_pYYYYMMDD"; false for any other name.
 */
bool
medallion_bronze_partition_day(const char *parent, const char *partname, int *day)
{
	size_t		plen = strlen(parent);
	int			y,
				m,
				d,
				i;
	const char *digits;

	if (strlen(partname) != plen + PARTITION_SUFFIX_LEN ||
		strncmp(partname, parent, plen) != 0 ||
		strncmp(partname + plen, "_p", 2) != 0)
		return false;
	digits = partname + plen + 2;
	for (i = 0; i < 8; i++)
		if (digits[i] < '0' || digits[i] > '9')
			return false;
	y = (digits[0] - '0') * 1000 + (digits[1] - '0') * 100 + (digits[2] - '0') * 10 + (digits[3] - '0');
	m = (digits[4] - '0') * 10 + (digits[5] - '0');
	d = (digits[6] - '0') * 10 + (digits[7] - '0');
	if (m < 1 || m > 12 || d < 1 || d > 31)
		return false;
	*day = date2j(y, m, d) - POSTGRES_EPOCH_JDATE;
	return true;
}
