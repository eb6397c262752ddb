/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  PG_VERSION_NUM shims: what medallion does differently by server version.
 *
 * Include after postgres.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_COMPAT_H
#define MEDALLION_COMPAT_H

/*
 * COPY FROM fills the columns left out of its column list from the
 * defmap/defexprs/num_defaults arrays of its CopyFromState, a struct private
 * to COPY (commands/copyfrom_internal.h).  ingest.c adds constants there, so
 * that the batch id and file name are not parsed again for every row.  Only
 * PG15's layout is known to fit (PG16 indexes defexprs by attribute number
 * and adds COPY's DEFAULT option); other versions send those two columns
 * through COPY's parser like the payload.
 */
#if PG_VERSION_NUM >= 150000 && PG_VERSION_NUM < 160000
#define MEDALLION_COPY_CONSTANT_COLUMNS 1
#else
#define MEDALLION_COPY_CONSTANT_COLUMNS 0
#endif

#endif							/* MEDALLION_COMPAT_H */
