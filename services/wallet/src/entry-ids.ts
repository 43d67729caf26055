/**
 * A new journal entry's id: time-ordered (a UUID version 7, the runtime's timeOrderedUuid).
 * Entries are looked up by id (entries_pkey) and their lines by entry id (postings_pkey); with ids
 * in time order each entry adds its keys at the right end of those two indexes, where random ids
 * land anywhere: on a grown ledger a full-page image after every checkpoint for nearly each entry
 * (bench/wallet-entry-ids.ts).
 */
export { timeOrderedUuid } from "@ttip/runtime";
