# services.vllm for NixOS hosts: several instances, each a hardened systemd service that is
# "started" only once its endpoint lists the model.
{ self }:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.vllm;
  system = pkgs.stdenv.hostPlatform.system;

  instance = types.submodule (
    { name, config, ... }:
    {
      options = {
        enable = lib.mkEnableOption "vLLM instance ${name}";
        accelerator = mkOption {
          type = types.enum [
            "nvidia"
            "amd"
            "cpu"
          ];
          default = "nvidia";
          description = "Which build of vLLM to run.";
        };
        package = mkOption {
          type = types.package;
          default = self.packages.${system}."vllm-server-${config.accelerator}";
          defaultText = "vllm-server-<accelerator> of this flake";
          description = "The vllm-server program.";
        };
        model = mkOption {
          type = types.str;
          description = "Hugging Face model id or local path.";
        };
        host = mkOption {
          type = types.str;
          default = "127.0.0.1";
        };
        port = mkOption {
          type = types.port;
          default = 8000;
        };
        extraArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "More vLLM arguments, one item each.";
        };
        environmentFile = mkOption {
          type = types.nullOr types.path;
          default = null;
          description = "Root-only file with VLLM_API_KEY and HF_TOKEN; secrets never go in the store.";
        };
        readyTimeout = mkOption {
          type = types.ints.positive;
          default = 900;
          description = "Seconds the readiness check waits for the model list (first starts download weights).";
        };
      };
    }
  );

  enabled = lib.filterAttrs (_: i: i.enable) cfg.instances;

  unit =
    name: i:
    let
      url = import ./health-url.nix i.host i.port;
      cache = "/var/cache/vllm-${name}";
    in
    {
      description = "vLLM OpenAI-compatible server (${name}, ${i.model})";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      # DynamicUser has no home, and ProtectHome hides /root: vLLM's caches (torch.compile,
      # Triton, its own) go to the unit's CacheDirectory, the weights to its StateDirectory.
      environment = {
        HF_HOME = "/var/lib/vllm-${name}/huggingface";
        XDG_CACHE_HOME = cache;
        VLLM_CACHE_ROOT = "${cache}/vllm";
        TRITON_CACHE_DIR = "${cache}/triton";
        HOME = cache;
      };
      serviceConfig = {
        ExecStart = lib.escapeShellArgs (
          [
            "${i.package}/bin/vllm-server"
            "--model"
            i.model
            "--host"
            i.host
            "--port"
            (toString i.port)
          ]
          ++ i.extraArgs
        );
        # Readiness: the unit is active only once the endpoint lists the model.
        ExecStartPost = "${self.packages.${system}.vllm-health}/bin/vllm-health ${url} --wait ${toString i.readyTimeout}";
        TimeoutStartSec = i.readyTimeout + 30;
        EnvironmentFile = lib.mkIf (i.environmentFile != null) i.environmentFile;
        Restart = "on-failure";
        RestartSec = 15;
        DynamicUser = true;
        StateDirectory = "vllm-${name}";
        CacheDirectory = "vllm-${name}";
        # GPU device nodes belong to these groups.
        SupplementaryGroups = [
          "video"
          "render"
        ];
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        NoNewPrivileges = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectControlGroups = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
      };
    };
in
{
  options.services.vllm.instances = mkOption {
    type = types.attrsOf instance;
    default = { };
    description = "vLLM servers, one systemd service vllm-<name> each.";
  };

  config = lib.mkIf (enabled != { }) {
    assertions = lib.mapAttrsToList (name: i: {
      assertion = i.host == "127.0.0.1" || i.host == "::1" || i.environmentFile != null;
      message = "services.vllm.instances.${name}: a non-loopback host needs environmentFile with VLLM_API_KEY";
    }) enabled;
    hardware.graphics.enable = lib.mkDefault true;
    systemd.services = lib.mapAttrs' (name: i: lib.nameValuePair "vllm-${name}" (unit name i)) enabled;
  };
}
