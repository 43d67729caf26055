// make typecheck's Next environment (apps/tsconfig.typecheck.json), in place of next-env.d.ts, which
// also pulls in .next/types/routes.d.ts: `next build` empties and rewrites .next/ while the
// type-check runs beside the tests. The route types come from .route-types/ (route-types.ts, which
// make typecheck runs before tsc).
/// <reference types="next" />
/// <reference types="next/image-types/global" />
