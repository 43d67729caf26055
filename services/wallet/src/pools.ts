// The old per-venue pool rules (SetPoolRules/DistributePool, deprecated): the
// venue service now keeps versioned split rules and posts each period's split
// with PostPoolDistribution. Rules stored before then stay readable.
import { create } from "@bufbuild/protobuf";
import { NotFoundError, type Queryable } from "@ttip/runtime";
import { PoolRulesSchema, PoolShareSchema, type PoolRules } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";

interface RulesRow {
  venue_id: string;
  version: number;
  members: { worker_id: string; shares: number }[];
}

function toRules(r: RulesRow): PoolRules {
  return create(PoolRulesSchema, {
    venueId: r.venue_id,
    version: r.version,
    members: r.members.map((m) => create(PoolShareSchema, { workerId: m.worker_id, shares: m.shares })),
  });
}

export async function getPoolRules(db: Queryable, venueId: string): Promise<PoolRules> {
  const { rows } = await db.query<RulesRow>(`SELECT * FROM wallet.pool_rules WHERE venue_id = $1 ORDER BY version DESC LIMIT 1`, [venueId]);
  if (!rows[0]) throw new NotFoundError(`venue ${venueId} has no pool rules yet`);
  return toRules(rows[0]);
}
