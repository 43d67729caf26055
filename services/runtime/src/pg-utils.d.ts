// pg's own value encoder (lib/utils.js), which its Query.prepare hands to Bind: used where the
// runtime writes a named statement's Bind itself (deferred-begin.ts), so values encode as pg's do.
declare module "pg/lib/utils.js" {
  const utils: { prepareValue(value: unknown): unknown };
  export default utils;
}
