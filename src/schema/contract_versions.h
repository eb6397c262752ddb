/*-------------------------------------------------------------------------
 *
 * contract_versions.h
 *	  Private declarations of contract versions, compatibility and
 *	  alter_contract (the schema room).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONTRACT_VERSIONS_H
#define CONTRACT_VERSIONS_H

#include "medallion.h"

/* A change the pipeline's compatibility mode refuses (without force). */
#define MEDALLION_ERRCODE_CONTRACT_INCOMPATIBLE MAKE_SQLSTATE('M','D','0','4','0')
/* A change alter_contract cannot make in place: it needs a rebuild. */
#define MEDALLION_ERRCODE_CONTRACT_NEEDS_REBUILD MAKE_SQLSTATE('M','D','0','4','1')

/* contract_versions.c */
typedef struct ContractVersion
{
	int32		version;
	Jsonb	   *definition;
} ContractVersion;

extern List *medallion_contract_versions_load(const char *pipeline);
extern void medallion_contract_change_record(const char *pipeline, const char *relation,
											 const char *classification, Jsonb *detail);
extern List *medallion_contract_expectations_load(const char *pipeline);
extern char *medallion_contract_referencing_pipeline(const char *pipeline, const char *target);

/* compatibility.c */
typedef struct CompatibilityMode
{
	bool		backward;		/* payloads the earlier version accepted still are */
	bool		forward;		/* readers of the earlier table still work */
	bool		transitive;		/* against every earlier version, not the last */
} CompatibilityMode;

/* How one column's type changes. */
typedef enum TypeChange
{
	TYPE_SAME,
	TYPE_WIDENED,				/* every old value fits, unchanged */
	TYPE_CHANGED				/* narrowed or another type */
} TypeChange;

/* What a new contract breaks against one earlier version. */
typedef struct CompatibilityReport
{
	List	   *backward;		/* of char *: rules broken, translated */
	List	   *forward;
	bool		widened;		/* some column's type was widened */
} CompatibilityReport;

extern CompatibilityMode medallion_compatibility_mode(const char *mode);
extern TypeChange medallion_type_change(const ColumnSpec *old, const ColumnSpec *new);
extern void medallion_compatibility_compare(Contract *old, int32 old_version, Contract *new,
											CompatibilityReport *report);

#endif							/* CONTRACT_VERSIONS_H */
