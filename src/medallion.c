/*-------------------------------------------------------------------------
 *
 * medallion.c
 *	  Module magic and load-time initialisation of the medallion extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "medallion.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Called when the library is loaded, at server start when it is in
 * shared_preload_libraries (then with the background processes), or on
 * first use otherwise (manual runs only).
 */
void
_PG_init(void)
{
	medallion_guc_init();
	if (process_shared_preload_libraries_in_progress)
	{
		medallion_shmem_init();
		medallion_hooks_init();
		medallion_launcher_register();
	}
}
