//! The examples every command's `--help` ends with (clap's `after_help`), kept here so they
//! read as one set and stay in step with the README's quick reference.

pub const FETCH: &str = "\
Examples:
  ferry fetch deepseek-ai/DeepSeek-R1 --to /models/DeepSeek-R1
  ferry fetch deepseek-ai/DeepSeek-R1@main --local-dir /models/r1 --include '*.safetensors'
  ferry fetch Qwen/Qwen3-8B config.json tokenizer.json --to /models/qwen3-8b
  ferry fetch deepseek-ai/DeepSeek-R1 --source modelscope --to /models/r1 --dry-run
  ferry fetch deepseek-ai/DeepSeek-R1 --to /models/r1 --slices 8 --metrics-listen 0.0.0.0:9400
  ferry fetch s3://models/DeepSeek-R1 --s3-endpoint https://cos.ap-shanghai.myqcloud.com --to /models/r1
  ferry fetch deepseek-ai/DeepSeek-R1 --cache-dir /mnt/cfs/hf   # the Hugging Face cache layout
  ferry fetch ollama://deepseek-r1:7b --to /models/ollama        # an Ollama models directory
  ferry fetch deepseek-ai/DeepSeek-R1 --to /models/r1 --slices 8 --dynamic

Environment: HF_ENDPOINT, HF_TOKEN (or the token file `hf auth login` writes),
MODELSCOPE_ENDPOINT (or MODELSCOPE_DOMAIN), MODELSCOPE_API_TOKEN; HTTPS_PROXY, HTTP_PROXY,
NO_PROXY; SSL_CERT_FILE, SSL_CERT_DIR, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE (added to the trusted
CAs); HF_HUB_OFFLINE, FERRY_OFFLINE; HF_HUB_CACHE, HF_HOME, MODELSCOPE_CACHE (the default
cache); FERRY_OLLAMA_REGISTRY (the registry URL for ollama:// names). Flags override them.

ollama://[HOST/][NAMESPACE/]MODEL[:TAG] fetches a tag from the Ollama registry into an Ollama
models directory (OLLAMA_MODELS): blobs/sha256-HEX, then manifests/HOST/NAMESPACE/MODEL/TAG
last; --endpoint names the registry URL.";

pub const VERIFY: &str = "\
Examples:
  ferry verify /models/DeepSeek-R1
  ferry verify /models/DeepSeek-R1 --full --json
  ferry verify /models/hf-downloaded --against deepseek-ai/DeepSeek-R1@main";

pub const STATUS: &str = "\
Examples:
  ferry status /models/DeepSeek-R1
  ferry status /models/DeepSeek-R1 --json
  ferry status /models --check-volume";

pub const PLAN_SLICES: &str = "\
Examples:
  ferry plan slices --count 8 --repo deepseek-ai/DeepSeek-R1
  ferry plan slices --count 8 --simulate deepseek-r1 --json";

pub const PLAN_WARM: &str = "\
Examples:
  ferry plan warm --nnodes 2 --gpus-per-node 8 --dir /models/DeepSeek-R1 --json --out plan.json
  ferry plan warm --nnodes 2 --gpus-per-node 8 --engine vllm --pp 2 --simulate deepseek-r1";

pub const WARM: &str = "\
Examples:
  ferry warm /models/DeepSeek-R1
  ferry warm /models/DeepSeek-R1 --plan plan.json --node-rank 1
  ferry warm /models/DeepSeek-R1 --tp 16 --nnodes 2 --jobs 16 --json";

pub const SIDECAR: &str = "\
Examples:
  ferry sidecar --model-dir /models/DeepSeek-R1 --mode init --timeout 2h
  ferry sidecar --model-dir /models/DeepSeek-R1 --warm --tp 16 --nnodes 2 --preflight
  ferry sidecar --model-dir /models/DeepSeek-R1 --listen 0.0.0.0:8090";

pub const DOCTOR: &str = "\
Examples:
  ferry doctor --model-dir /models/DeepSeek-R1 --tp 16 --nnodes 2
  ferry doctor --repo deepseek-ai/DeepSeek-R1 --tp 8 --assume-gpu H800 --json";

pub const LINT: &str = "\
Examples:
  ferry lint deploy/overlays/sglang-2x8
  kubectl kustomize deploy/overlays/sglang-2x8 | ferry lint -
  ferry lint --list-rules";

pub const DEPLOY_RENDER: &str = "\
Examples:
  ferry deploy render --engine sglang --model deepseek-ai/DeepSeek-R1 --nodes 2 > r1.yaml
  ferry deploy render --engine vllm --model Qwen/Qwen3-8B --gpus-per-node 1 --source modelscope";
