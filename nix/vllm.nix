# vLLM for one accelerator: the server, its health check, an OCI image and a dev shell.
{ pkgs, accelerator }:
let
  python = pkgs.python3.withPackages (ps: [ ps.vllm ]);

  # `vllm serve`, the vllm/vllm-openai image's entrypoint, so one argument list
  # (vllm_fleet/launch.py) serves both ways of running it. The `vllm` program, not
  # `python -m vllm.entrypoints.openai.api_server` (deprecated): it carries the variables
  # nixpkgs' package wraps it with.
  server = pkgs.writeShellApplication {
    name = "vllm-server";
    text = ''
      exec ${python}/bin/vllm serve "$@"
    '';
  };

  # vllm-health [URL] [--wait SECONDS]: /health answers and /v1/models lists a model.
  # /health alone can answer 200 while the GPU is broken, hence the model list too.
  # The API key comes from VLLM_API_KEY in the environment, never an argument.
  health = pkgs.writeShellApplication {
    name = "vllm-health";
    runtimeInputs = [
      pkgs.curl
      pkgs.coreutils
    ];
    text = ''
      url=''${1:-http://127.0.0.1:8000}
      wait_s=0
      if [ "''${2:-}" = "--wait" ]; then wait_s=''${3:-600}; fi
      deadline=$(( $(date +%s) + wait_s ))
      while :; do
        if curl -fsS --max-time 5 "$url/health" >/dev/null 2>&1 \
          && printf 'Authorization: Bearer %s\n' "''${VLLM_API_KEY:-}" \
            | curl -fsS --max-time 5 -H @- "$url/v1/models" | grep -q '"id"'; then
          echo "vLLM at $url is healthy and lists a model"
          exit 0
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
          echo "vLLM at $url is not healthy (checked /health and /v1/models)" >&2
          exit 1
        fi
        sleep 2
      done
    '';
  };

  image = pkgs.dockerTools.buildLayeredImage {
    name = "vllm-fleet/vllm-nix";
    tag = accelerator;
    contents = [
      server
      health
      pkgs.cacert
    ];
    config = {
      Entrypoint = [ "${server}/bin/vllm-server" ];
      ExposedPorts."8000/tcp" = { };
      Env = [
        "HF_HOME=/root/.cache/huggingface"
        "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt"
      ];
    };
  };

  shell = pkgs.mkShell {
    packages = [
      python
      server
      health
    ];
  };
in
{
  inherit
    python
    server
    health
    image
    shell
    ;
}
