// Saved M-Pesa numbers. Adding a number twice returns the saved one (updated
// label/default), so the call is safe to retry.
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { lockForTransaction, maskPhone, NotFoundError, type Pool, type Queryable, withTransaction } from "@ttip/runtime";
import { PaymentMethodKind, PaymentMethodSchema, type PaymentMethod } from "@ttip/proto/ttip/payment/v1/payment_pb.js";

interface MethodRow {
  payment_method_id: string;
  owner_id: string;
  phone: string;
  label: string;
  is_default: boolean;
  created_at: Date;
}

function toMessage(r: MethodRow): PaymentMethod {
  return create(PaymentMethodSchema, {
    paymentMethodId: r.payment_method_id,
    kind: PaymentMethodKind.MPESA,
    phoneMasked: maskPhone(r.phone),
    label: r.label,
    isDefault: r.is_default,
    createdAt: timestampFromDate(r.created_at),
  });
}

export async function listMethods(db: Queryable, ownerId: string): Promise<PaymentMethod[]> {
  const { rows } = await db.query<MethodRow>(
    "SELECT * FROM payment.payment_methods WHERE owner_id = $1 ORDER BY is_default DESC, created_at, payment_method_id",
    [ownerId],
  );
  return rows.map(toMessage);
}

export async function addMethod(pool: Pool, ownerId: string, phone: string, label: string, makeDefault: boolean): Promise<PaymentMethod> {
  return withTransaction(pool, async (tx) => {
    // Serialises one owner's changes so "exactly one default" holds under concurrent calls.
    await lockForTransaction(tx, `payment_methods:${ownerId}`);
    const { rows: existing } = await tx.query<{ count: bigint }>("SELECT count(*) AS count FROM payment.payment_methods WHERE owner_id = $1", [ownerId]);
    const becomesDefault = makeDefault || existing[0].count === 0n;
    if (becomesDefault) await tx.query("UPDATE payment.payment_methods SET is_default = false WHERE owner_id = $1 AND is_default AND phone <> $2", [ownerId, phone]);
    const { rows } = await tx.query<MethodRow>(
      `INSERT INTO payment.payment_methods (payment_method_id, owner_id, phone, label, is_default) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (owner_id, phone) DO UPDATE SET label = EXCLUDED.label, is_default = payment_methods.is_default OR EXCLUDED.is_default
       RETURNING *`,
      [randomUUID(), ownerId, phone, label, becomesDefault],
    );
    return toMessage(rows[0]);
  });
}

export async function removeMethod(pool: Pool, ownerId: string, id: string): Promise<void> {
  await withTransaction(pool, async (tx) => {
    await lockForTransaction(tx, `payment_methods:${ownerId}`);
    const { rows } = await tx.query<MethodRow>("DELETE FROM payment.payment_methods WHERE payment_method_id = $1 AND owner_id = $2 RETURNING *", [id, ownerId]);
    if (!rows[0]) throw new NotFoundError("payment_method_id: no such payment method");
    // The oldest remaining number takes over as default.
    if (rows[0].is_default) {
      await tx.query(
        `UPDATE payment.payment_methods SET is_default = true WHERE payment_method_id =
           (SELECT payment_method_id FROM payment.payment_methods WHERE owner_id = $1 ORDER BY created_at, payment_method_id LIMIT 1)`,
        [ownerId],
      );
    }
  });
}

/** The owner's default M-Pesa number, if any. */
export async function defaultPhone(db: Queryable, ownerId: string): Promise<string | undefined> {
  const { rows } = await db.query<{ phone: string }>("SELECT phone FROM payment.payment_methods WHERE owner_id = $1 AND is_default", [ownerId]);
  return rows[0]?.phone;
}
