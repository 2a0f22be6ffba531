/* owner_call.c: the calls a table's owner makes on her own table, run as the extension's owner. */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "capture.h"

PG_FUNCTION_INFO_V1(crm_kpi_owner_call);
/*
 * Call crm_kpi.<name>_by(the caller's arguments..., the caller), where <name> is
 * the name the function was called by, as the extension's owner (that of its
 * queue), as a SECURITY DEFINER function would, and return its result. The
 * target is executable by its owner only and checks what the caller may do: the
 * caller is the role that called this function, whatever functions are on the
 * stack. It is bind_source, unbind_source, track_lifecycle and untrack_lifecycle.
 */
Datum
crm_kpi_owner_call(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	int			nargs = PG_NARGS();
	Oid			argtypes[FUNC_MAX_ARGS];
	HeapTuple	proc;
	char	   *target;
	Oid			funcoid;
	FmgrInfo	flinfo;
	Oid			save_userid;
	int			save_sec_context;
	Datum		result;

	LOCAL_FCINFO(call, FUNC_MAX_ARGS);

	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	if (nargs + 1 > FUNC_MAX_ARGS)
		elog(ERROR, "too many arguments");
	memcpy(argtypes, ((Form_pg_proc) GETSTRUCT(proc))->proargtypes.values, nargs * sizeof(Oid));
	target = psprintf("%s_by", NameStr(((Form_pg_proc) GETSTRUCT(proc))->proname));
	ReleaseSysCache(proc);
	argtypes[nargs] = REGROLEOID;
	funcoid = LookupFuncName(list_make2(makeString("crm_kpi"), makeString(target)), nargs + 1, argtypes, false);

	fmgr_info(funcoid, &flinfo);
	InitFunctionCallInfoData(*call, &flinfo, nargs + 1, fcinfo->fncollation, NULL, NULL);
	for (int i = 0; i < nargs; i++)
		call->args[i] = fcinfo->args[i];
	call->args[nargs].value = ObjectIdGetDatum(caller);
	call->args[nargs].isnull = false;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	/* an error restores the caller's identity as it aborts the (sub)transaction */
	SetUserIdAndSecContext(capture_queue_owner(), save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	result = FunctionCallInvoke(call);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (call->isnull)
		PG_RETURN_NULL();
	return result;
}
