/*-------------------------------------------------------------------------
 *
 * medallion.c
 *	  Module magic and load-time initialisation of the medallion extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "medallion.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Called when the library is loaded, at server start when it is in
 * shared_preload_libraries, or on first use otherwise.
 */
void
_PG_init(void)
{
	medallion_guc_init();
}
