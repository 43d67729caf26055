// Screens and flows under jest-expo against a fake transport (Connect's router
// transport serving the real generated service descriptors).
const path = require("node:path");
const root = path.resolve(__dirname, "../..");

module.exports = {
  preset: "jest-expo",
  testMatch: ["<rootDir>/src/**/*.spec.ts?(x)"],
  setupFiles: ["<rootDir>/jest.setup.js"],
  // Renders and polls on two busy cores; compiling React Native's components is paid as the
  // file loads (src/testing/render-app.tsx), not by the first test.
  testTimeout: 30_000,
  moduleNameMapper: {
    "^@ttip/proto/(.*)\\.js$": path.join(root, "proto/gen/$1.ts"),
    "^@ttip/web-lib/(.*)$": path.join(root, "apps/web/src/lib/$1"),
    // The generated code's relative imports name the .ts files as ".js".
    "^(\\.{1,2}/.*)\\.js$": "$1",
  },
  // Generated and shared code outside this folder resolves its packages from here.
  modulePaths: ["<rootDir>/node_modules"],
  transformIgnorePatterns: [
    "node_modules/(?!((jest-)?react-native|@react-native(-community)?|expo(nent)?|@expo(nent)?/.*|@expo-google-fonts/.*|react-navigation|@react-navigation/.*|@bufbuild/.*|@connectrpc/.*|@noble/.*))",
  ],
};
