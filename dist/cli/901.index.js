export const id = 901;
export const ids = [901];
export const modules = {

/***/ 8901:
/***/ ((__unused_webpack_module, __webpack_exports__, __webpack_require__) => {

/* harmony export */ __webpack_require__.d(__webpack_exports__, {
/* harmony export */   metricsText: () => (/* binding */ metricsText),
/* harmony export */   writeTextfile: () => (/* binding */ writeTextfile)
/* harmony export */ });
/* unused harmony export reasonLabel */
/* harmony import */ var prom_client__WEBPACK_IMPORTED_MODULE_0__ = __webpack_require__(5222);
/* harmony import */ var _common_atomic_js__WEBPACK_IMPORTED_MODULE_1__ = __webpack_require__(4112);
/* harmony import */ var _root_journal_js__WEBPACK_IMPORTED_MODULE_2__ = __webpack_require__(5823);
/* harmony import */ var _root_layout_js__WEBPACK_IMPORTED_MODULE_3__ = __webpack_require__(5388);
/* harmony import */ var _common_space_js__WEBPACK_IMPORTED_MODULE_4__ = __webpack_require__(3039);
/* harmony import */ var _census_js__WEBPACK_IMPORTED_MODULE_5__ = __webpack_require__(2293);
/* harmony import */ var node_fs__WEBPACK_IMPORTED_MODULE_6__ = __webpack_require__(3024);
/* harmony import */ var node_fs__WEBPACK_IMPORTED_MODULE_6___default = /*#__PURE__*/__webpack_require__.n(node_fs__WEBPACK_IMPORTED_MODULE_6__);







/** Why a lane went, as a bounded label: orphan, max-age, keep-free, warm-keep or other. */
function reasonLabel(reason) {
    const text = reason ?? '';
    if (text.startsWith('orphan'))
        return 'orphan';
    if (text.includes('max-age'))
        return 'max-age';
    if (text.includes('keep-free'))
        return 'keep-free';
    if (text.includes('warm-keep'))
        return 'warm-keep';
    return 'other';
}
/**
 * What a fleet operator graphs and alerts on, in Prometheus' text format: lanes (and, with
 * sizes, bytes) by state, the root's free space against the keep-free target, the oldest live
 * lane's age, reaps and evictions by reason, delete failures and resisting trash entries, and
 * the last sweep's time and duration (the last two from the journal).
 */
async function metricsText(root, options) {
    const registry = new prom_client__WEBPACK_IMPORTED_MODULE_0__.Registry();
    const layout = new _root_layout_js__WEBPACK_IMPORTED_MODULE_3__/* .Layout */ .PE(root);
    try {
        const figures = laneMetrics(registry, layout, options);
        spaceMetrics(registry, root, options.keepFree);
        if (figures.oldestLive !== undefined) {
            gaugeIn(registry, 'runlane_oldest_live_lane_age_seconds', 'Age of the oldest lane whose lease is held.').set((Date.now() - figures.oldestLive) / 1000);
        }
        gaugeIn(registry, 'runlane_trash_resisting_entries', 'Trash entries that resisted deletion (retried every sweep).').set(figures.resisting);
        gaugeIn(registry, 'runlane_problems', 'Parts of the root a listing had to skip (refused directories, unusable locks).').set(figures.problems);
        journalMetrics(registry, (0,_root_journal_js__WEBPACK_IMPORTED_MODULE_2__/* .readJournal */ .a0)(layout));
    }
    finally {
        layout.close();
    }
    return registry.metrics();
}
function gaugeIn(registry, name, help, labelNames = []) {
    return new prom_client__WEBPACK_IMPORTED_MODULE_0__.Gauge({ name, help, labelNames, registers: [registry] });
}
/** Lanes, parked lanes and trash entries counted (and sized) by state, one at a time. */
function laneMetrics(registry, layout, options) {
    const lanes = gaugeIn(registry, 'runlane_lanes', 'Lanes under the root by state.', ['state']);
    const bytes = gaugeIn(registry, 'runlane_lane_bytes', 'Disk use of the lanes by state: as measured when a lane was kept or parked; with --sizes, every lane and trash entry measured now.', ['state']);
    const figures = { resisting: 0, problems: 0 };
    const counts = new Map(['live', 'orphan', 'kept', 'unknown', 'parked', 'trash'].map((state) => [state, 0]));
    const onProblem = () => figures.problems++;
    (0,_census_js__WEBPACK_IMPORTED_MODULE_5__/* .takeCensus */ .T)(layout, { sizes: options.sizes, onProblem }, (entry) => {
        // Live is what the kernel says (the lease is held), whatever the lane's metadata says:
        // a job can write a `retained` marker into its own live lane, not take its lease away.
        const state = entry.leased ? 'live' : entry.state;
        counts.set(state, (counts.get(state) ?? 0) + 1);
        if (entry.size)
            bytes.inc({ state }, entry.size.bytes);
        if (state === 'unknown')
            figures.problems++;
        if (entry.failures?.length)
            figures.resisting++;
        const created = Date.parse(entry.since ?? '');
        if (state === 'live' && !Number.isNaN(created))
            figures.oldestLive = Math.min(figures.oldestLive ?? created, created);
    });
    for (const [state, count] of counts)
        lanes.set({ state }, count);
    if (options.sizes)
        for (const state of counts.keys())
            bytes.inc({ state }, 0);
    return figures;
}
/** The root's file system: free bytes, size, and the keep-free target when one is set. */
function spaceMetrics(registry, root, keepFree) {
    gaugeIn(registry, 'runlane_root_free_bytes', "Bytes free for unprivileged users on the root's file system.").set((0,_common_space_js__WEBPACK_IMPORTED_MODULE_4__/* .freeBytes */ .go)(root));
    const stats = node_fs__WEBPACK_IMPORTED_MODULE_6___default().statfsSync(root);
    gaugeIn(registry, 'runlane_root_size_bytes', "Size of the root's file system.").set(stats.blocks * stats.bsize);
    if (keepFree) {
        gaugeIn(registry, 'runlane_keep_free_target_bytes', 'Free space the sweep keeps (keep-free).').set((0,_common_space_js__WEBPACK_IMPORTED_MODULE_4__/* .requiredFree */ .Gh)(root, keepFree));
    }
}
/** Counters over the journal (they restart when it rotates, which Prometheus' rate() handles). */
function journalMetrics(registry, records) {
    const removals = new prom_client__WEBPACK_IMPORTED_MODULE_0__.Counter({
        name: 'runlane_removals_total',
        help: 'Lanes reaped or evicted, by reason (orphan, max-age, keep-free, warm-keep, other).',
        labelNames: ['action', 'reason'],
        registers: [registry],
    });
    const failures = new prom_client__WEBPACK_IMPORTED_MODULE_0__.Counter({
        name: 'runlane_delete_failures_total',
        help: 'Deletions that left something behind (a root-owned or immutable file, a mount).',
        registers: [registry],
    });
    const freed = new prom_client__WEBPACK_IMPORTED_MODULE_0__.Counter({
        name: 'runlane_deleted_bytes_total',
        help: 'Bytes freed by deleting trash entries.',
        registers: [registry],
    });
    failures.inc(0);
    freed.inc(0);
    let lastSweep;
    // Compared as instants (the reader keeps only ISO-8601 ones, none in the future), not as strings.
    for (const record of records) {
        if (record.action === 'reaped' || record.action === 'evicted')
            removals.inc({ action: record.action, reason: reasonLabel(record.reason) });
        else if (record.action === 'delete-failed')
            failures.inc();
        else if (record.action === 'deleted')
            freed.inc(record.bytes ?? 0);
        else if (record.action === 'swept' && (!lastSweep || Date.parse(record.time) > Date.parse(lastSweep.time)))
            lastSweep = record;
    }
    if (lastSweep) {
        new prom_client__WEBPACK_IMPORTED_MODULE_0__.Gauge({
            name: 'runlane_last_sweep_timestamp_seconds',
            help: 'When the last sweep finished (Unix time).',
            registers: [registry],
        }).set(Date.parse(lastSweep.time) / 1000);
        new prom_client__WEBPACK_IMPORTED_MODULE_0__.Gauge({
            name: 'runlane_last_sweep_duration_seconds',
            help: 'How long the last sweep took.',
            registers: [registry],
        }).set(lastSweep.seconds ?? 0);
    }
}
/** Writes the exposition for node_exporter's textfile collector: atomically, so it never reads half a file. */
function writeTextfile(file, text) {
    (0,_common_atomic_js__WEBPACK_IMPORTED_MODULE_1__/* .writeFileAtomic */ .Zf)(file, text);
}


/***/ })

};
