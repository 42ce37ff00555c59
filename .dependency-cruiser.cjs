/**
 * The house rules, checked by `npm run lint` (depcruise): the concepts' folders under
 * src/core/ form a library that knows no runner, no CLI and no @actions package, in layers
 * that import only downwards (the delete room leans on nothing but src/core/common); nothing
 * imports in a circle.
 * docs/architecture.md draws the same picture.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle makes two rooms one: split out what both need.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'core-knows-no-adapter',
      severity: 'error',
      comment: 'src/core is the library; the action, the CLI, the remote tier and the entries are built on it.',
      from: { path: '^src/core/' },
      to: { path: '^src/(action|cli|remote|entries)/' },
    },
    {
      name: 'core-knows-no-runner',
      severity: 'error',
      comment: "No @actions/* package in the core: the runner protocol is the adapters' business.",
      from: { path: '^src/core/' },
      to: { path: '@actions/' },
    },
    // The concepts in layers, each importing only those below it (docs/architecture.md):
    // common < delete < lease < lane < root < warm < job < ops.
    {
      name: 'layer-common',
      severity: 'error',
      comment: 'src/core/common imports only itself from the core.',
      from: { path: '^src/core/common/' },
      to: { path: '^src/core/(?!(common)/)' },
    },
    {
      name: 'layer-delete',
      severity: 'error',
      comment: 'src/core/delete imports only common from the core.',
      from: { path: '^src/core/delete/' },
      to: { path: '^src/core/(?!(delete|common)/)' },
    },
    {
      name: 'layer-lease',
      severity: 'error',
      comment: 'src/core/lease imports only common, delete from the core.',
      from: { path: '^src/core/lease/' },
      to: { path: '^src/core/(?!(lease|common|delete)/)' },
    },
    {
      name: 'layer-lane',
      severity: 'error',
      comment: 'src/core/lane imports only common, delete, lease from the core.',
      from: { path: '^src/core/lane/' },
      to: { path: '^src/core/(?!(lane|common|delete|lease)/)' },
    },
    {
      name: 'layer-root',
      severity: 'error',
      comment: 'src/core/root imports only common, delete, lease, lane from the core.',
      from: { path: '^src/core/root/' },
      to: { path: '^src/core/(?!(root|common|delete|lease|lane)/)' },
    },
    {
      name: 'layer-warm',
      severity: 'error',
      comment: 'src/core/warm imports only common, delete, lease, lane, root from the core.',
      from: { path: '^src/core/warm/' },
      to: { path: '^src/core/(?!(warm|common|delete|lease|lane|root)/)' },
    },
    {
      name: 'layer-job',
      severity: 'error',
      comment: 'src/core/job imports only common, delete, lease, lane, root, warm from the core.',
      from: { path: '^src/core/job/' },
      to: { path: '^src/core/(?!(job|common|delete|lease|lane|root|warm)/)' },
    },
    {
      name: 'layer-ops',
      severity: 'error',
      comment: 'src/core/ops imports only common, delete, lease, lane, root, warm, job from the core.',
      from: { path: '^src/core/ops/' },
      to: { path: '^src/core/(?!(ops|common|delete|lease|lane|root|warm|job)/)' },
    },
    {
      name: 'remote-below-adapters',
      severity: 'error',
      comment: 'The remote tier serves the action; it never imports it or the CLI.',
      from: { path: '^src/remote/' },
      to: { path: '^src/(action|cli)/' },
    },
    {
      name: 'entries-are-one-call',
      severity: 'error',
      comment: 'An entry file only calls into its adapter.',
      from: { path: '^src/(core|action|cli|remote)/' },
      to: { path: '^src/entries/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
