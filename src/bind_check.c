/* bind_check.c: vets a binding's SQL: one expression over its table, or the whole query reading it, calling only safe built-ins. */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

/* What the walker looks for, and the first problem it found. */
typedef struct BindCheckContext
{
	Oid			source;			/* an expression's table; InvalidOid for a whole query */
	bool		immutable_only; /* for a binder who is not a superuser */
	char	   *problem;
} BindCheckContext;

/* Record a problem with a function call (named what): only non-volatile functions of pg_catalog, or immutable ones */
static bool
bind_check_function(Oid funcid, const char *what, BindCheckContext *cx)
{
	char		volatility;
	bool		whole = !OidIsValid(cx->source);

	if (what == NULL)
		what = format_procedure(funcid);
	volatility = func_volatile(funcid);
	if (get_func_namespace(funcid) != PG_CATALOG_NAMESPACE)
		cx->problem = whole ? psprintf("it calls %s, which is not a function of pg_catalog", what)
			: psprintf("expressions may call only functions of pg_catalog, not %s", what);
	else if (volatility == PROVOLATILE_VOLATILE)
		cx->problem = whole ? psprintf("it calls %s, which is volatile", what)
			: psprintf("expressions may call only non-volatile functions, not %s", what);
	else if (cx->immutable_only && volatility != PROVOLATILE_IMMUTABLE)
		cx->problem = psprintf("it calls %s, which is not immutable: only a superuser may bind that", what);
	return cx->problem != NULL;
}

/* Record a problem with an operator's function */
static bool
bind_check_operator(Oid opno, Oid funcid, BindCheckContext *cx)
{
	return bind_check_function(funcid,
							   OidIsValid(cx->source) ? NULL
							   : psprintf("operator %s (%s)", format_operator(opno), format_procedure(funcid)),
							   cx);
}

/*
 * Raise the executor's permission error if the caller may not read a table
 * or view of a query tree (at any depth; the tables under a view as the view's
 * owner), as running it would: the error ends the (sub)transaction, and with
 * it the locks that parsing took, so no one holds a lock through these
 * functions on a table they cannot read.
 */
static bool
bind_check_perms_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		ExecCheckRTPerms(((Query *) node)->rtable, true);
		return query_tree_walker((Query *) node, bind_check_perms_walker, context, 0);
	}
	return expression_tree_walker(node, bind_check_perms_walker, context);
}

/* Walk an expression or query tree, stopping at the first problem */
static bool
bind_check_walker(Node *node, BindCheckContext *cx)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *q = (Query *) node;

		if (q->commandType != CMD_SELECT || q->hasModifyingCTE || q->rowMarks != NIL)
		{
			cx->problem = pstrdup(OidIsValid(cx->source) ? "expressions may only read" : "it does more than read");
			return true;
		}
		return query_tree_walker(q, bind_check_walker, cx, 0);
	}
	if (IsA(node, FuncExpr))
	{
		if (bind_check_function(((FuncExpr *) node)->funcid, NULL, cx))
			return true;
	}
	else if (IsA(node, OpExpr) || IsA(node, DistinctExpr) || IsA(node, NullIfExpr))
	{
		OpExpr	   *op = (OpExpr *) node;

		set_opfuncid(op);
		if (bind_check_operator(op->opno, op->opfuncid, cx))
			return true;
	}
	else if (IsA(node, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *op = (ScalarArrayOpExpr *) node;

		set_sa_opfuncid(op);
		if (bind_check_operator(op->opno, op->opfuncid, cx))
			return true;
	}
	else if (IsA(node, Aggref) || IsA(node, WindowFunc) || IsA(node, GroupingFunc))
	{
		if (OidIsValid(cx->source))
		{
			cx->problem = pstrdup("expressions are computed per row: no aggregate or window function");
			return true;
		}
		if ((IsA(node, Aggref) && bind_check_function(((Aggref *) node)->aggfnoid, NULL, cx)) ||
			(IsA(node, WindowFunc) && bind_check_function(((WindowFunc *) node)->winfnoid, NULL, cx)))
			return true;
	}
	else if (IsA(node, SQLValueFunction) && cx->immutable_only)
	{
		cx->problem = pstrdup("it reads CURRENT_USER, CURRENT_TIMESTAMP or the like, which is not immutable: "
							  "only a superuser may bind that");
		return true;
	}
	return expression_tree_walker(node, bind_check_walker, cx);
}

PG_FUNCTION_INFO_V1(crm_kpi_expression_problem);
/*
 * Check one mapping expression over a source table: NULL when allowed, else
 * the problem. The expression must parse as exactly one expression of
 * "SELECT (expr) FROM source AS src", read no other table at that level, and
 * call only non-volatile functions and operators of pg_catalog, so that
 * evaluating it later, by whichever role refreshes the KPIs, reads data and
 * does nothing else. Syntax and name errors are raised as errors, and so is a
 * table (the source, or one a subquery reads) that the caller cannot read.
 */
Datum
crm_kpi_expression_problem(PG_FUNCTION_ARGS)
{
	Oid			source = PG_GETARG_OID(0);
	char	   *expr = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *relname = get_rel_name(source);
	char	   *nsp = get_namespace_name(get_rel_namespace(source));
	char	   *sql;
	List	   *parsed;
	Query	   *query;
	BindCheckContext cx = {source, false, NULL};

	AclResult	aclresult;

	if (relname == NULL || nsp == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", source)));
	/* before parsing locks it */
	aclresult = pg_class_aclcheck(source, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, get_relkind_objtype(get_rel_relkind(source)), relname);
	sql = psprintf("SELECT (%s) FROM %s AS src", expr, quote_qualified_identifier(nsp, relname));
	parsed = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(parsed) != 1)
		PG_RETURN_TEXT_P(cstring_to_text("an expression must be exactly one SQL expression"));
	query = parse_analyze_fixedparams(linitial_node(RawStmt, parsed), sql, NULL, 0, NULL);
	if (list_length(query->rtable) != 1 || list_length(query->targetList) != 1 ||
		query->hasAggs || query->hasWindowFuncs || query->groupClause != NIL ||
		query->havingQual != NULL || query->jointree->quals != NULL ||
		query->sortClause != NIL || query->limitCount != NULL || query->limitOffset != NULL ||
		query->setOperations != NULL || query->cteList != NIL || query->distinctClause != NIL)
		PG_RETURN_TEXT_P(cstring_to_text("an expression must be exactly one SQL expression over its table's row"));
	bind_check_perms_walker((Node *) query, NULL);
	if (bind_check_walker((Node *) query, &cx))
		PG_RETURN_TEXT_P(cstring_to_text(cx.problem));
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(crm_kpi_query_function_problem);
/*
 * Check every function a query would call, with its views expanded and their
 * row-level security policies applied: NULL when each one is a non-volatile
 * function of pg_catalog (an immutable one when immutable_only), else the
 * first that is not. PostgreSQL's own functions are in no pg_depend entry:
 * only the query tree names them all. A table or view the caller cannot read
 * is an error, as it would be for the query itself.
 */
Datum
crm_kpi_query_function_problem(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	List	   *parsed = raw_parser(sql, RAW_PARSE_DEFAULT);
	BindCheckContext cx = {InvalidOid, PG_GETARG_BOOL(1), NULL};
	List	   *queries;
	ListCell   *lc;

	if (list_length(parsed) != 1)
		PG_RETURN_TEXT_P(cstring_to_text("it must be exactly one statement"));
	queries = QueryRewrite(parse_analyze_fixedparams(linitial_node(RawStmt, parsed), sql, NULL, 0, NULL));
	foreach(lc, queries)
		bind_check_perms_walker(lfirst(lc), NULL);
	foreach(lc, queries)
	{
		if (bind_check_walker(lfirst(lc), &cx))
			PG_RETURN_TEXT_P(cstring_to_text(cx.problem));
	}
	PG_RETURN_NULL();
}
