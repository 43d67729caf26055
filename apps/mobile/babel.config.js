// Applies to the contracts' generated code outside this folder too (a project-wide config).
module.exports = function (api) {
  api.cache(true);
  return { presets: ["babel-preset-expo"] };
};
