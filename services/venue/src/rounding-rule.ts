// The rounding rule in English words: the service sends it (remainder_rule) and the web screens show
// it, from this one file (the web app imports it as @ttip/venue/rounding-rule), so the words cannot
// drift from what cutByWeights does. It imports nothing: browsers bundle it.

/** The rounding rule, as members and managers read it on every preview and distribution. */
export const REMAINDER_RULE =
  "Each member gets their weight's share of the takings, rounded down to a whole shilling " +
  "(to a cent when the takings are not whole shillings). The shillings left over, fewer than the " +
  "number of members, go one each to the members whose shares lost the most in rounding; ties go " +
  "to the larger weight, then to whoever joined first. The shares always add up to the takings exactly.";
