import { PermissionDeniedError } from "@ttip/runtime";

/**
 * Staff decide no money of their own worker account (separation of duties): a user who is both worker and
 * admin (or finance) could otherwise approve their own held tip, release a hold put on their payouts, match
 * a suspense payment to their own code or settle their own held payout. Another admin decides it.
 */
export function refuseOwnAccount(staffId: string, workerId: string | null | undefined, field: string): void {
  if (workerId && workerId === staffId) throw new PermissionDeniedError(`${field}: this is your own account's; another admin must decide it`);
}
