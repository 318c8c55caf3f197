"""The examples every command's --help ends with. Standard library only.

commands.py hands these to typer as epilogs, next to the summaries fast.COMMANDS holds, so a
command's help text lives in one place. A unit test checks that every command has two or
three and that each names its command.
"""

from __future__ import annotations

# command path -> (command line, what it does). No square brackets: typer's help reads them
# as rich markup.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "": [
        ("devbox up", "start your default box and print how to reach it"),
        ("devbox ls", "your boxes"),
        ("devbox help profiles", "how to write your own profile"),
    ],
    "up": [
        ("devbox up", "your default box"),
        ("devbox up pytorch-gpu --gpus 2", "a bundled profile, with two GPUs"),
        ("devbox up ./train.yaml --progress plain 2>up.log", "a profile file; steps as lines"),
    ],
    "ls": [
        ("devbox ls", "your boxes"),
        ("devbox ls --all --gpu 3", "whose box holds GPU 3"),
        ("devbox ls -q | xargs -n1 devbox info", "names only, for scripts"),
    ],
    "info": [
        ("devbox info", "your default box, with its Jupyter URL and ssh command"),
        ("devbox info pytorch-gpu --json", "the same as one JSON object"),
    ],
    "env": [
        ("devbox env", "your default box's conda environments: status, last update, file"),
        ("devbox env pytorch-gpu --json", "the same as JSON (why a failed one failed: message)"),
    ],
    "down": [
        ("devbox down", "stop and remove your default box; volumes stay"),
        ("devbox down pytorch-gpu --purge --yes", "and delete its named volumes"),
    ],
    "rebuild": [
        ("devbox rebuild", "after editing the profile of your default box"),
        ("devbox rebuild pytorch-gpu --pull", "with a freshly pulled image"),
        ("devbox rebuild mybuild --no-cache", "a build: profile, without the layer cache"),
    ],
    "switch": [
        ("devbox switch pytorch-gpu", "stop your other boxes, then up this one"),
        ("devbox switch default --json", "the same, the result as JSON"),
    ],
    "logs": [
        ("devbox logs", "your default box's log"),
        ("devbox logs pytorch-gpu -f --tail 50", "the last 50 lines, then follow"),
    ],
    "exec": [
        ("devbox exec default -- nvidia-smi", "run a command in your default box"),
        ("devbox exec pytorch-gpu -- python train.py", "as the box's user, in /workspace"),
    ],
    "ssh": [
        ("devbox ssh", "log into your default box"),
        ("devbox ssh pytorch-gpu -- nvidia-smi", "run one command over SSH"),
    ],
    "ssh-config": [
        ("devbox ssh-config", "print Host entries for your running boxes"),
        ("devbox ssh-config --write", "keep them in ~/.ssh/config for VS Code"),
    ],
    "tunnel": [
        ("devbox tunnel exp1", "its ports here until Ctrl-C; prints the Jupyter URL to open"),
        ("devbox tunnel exp1 -p jupyter=8888 --background", "Jupyter on localhost:8888, in the background"),
        ("devbox tunnel exp1 --stop", "end that background tunnel"),
    ],
    "proxy": [
        ("devbox proxy exp1", "what ssh runs for Host devbox-exp1 (ProxyCommand)"),
        ("ssh -o ProxyCommand='devbox proxy exp1' devbox-exp1", "the same by hand"),
    ],
    "gpus": [
        ("devbox gpus", "every GPU and who holds it"),
        ("devbox gpus --json", "the same as JSON"),
        ("devbox gpus --all-hosts", "every GPU of every server, a HOST column first"),
    ],
    "hosts": [
        ("devbox hosts", "each server: reachable, its devbox version, GPUs free"),
        ("devbox hosts --json --timeout 3", "the same as JSON, 3 s per server"),
    ],
    "doctor": [
        ("devbox doctor", "check the engine, GPUs and policy"),
        ("devbox doctor --json", "the checks as JSON; exit 1 on a failure"),
    ],
    "prune": [
        ("devbox prune", "list your stopped boxes, then remove them"),
        ("devbox prune --all --older-than 7d --yes", "everyone's stopped for a week, no question"),
        ("devbox prune --idle", "report running boxes whose GPUs are idle"),
    ],
    "policy": [
        ("devbox policy show", "the policy in force"),
        ("devbox policy check /etc/devbox/policy.yaml", "validate a policy file"),
    ],
    "policy show": [
        ("devbox policy show", "the policy in force"),
        ("devbox policy show --json", "the same as JSON"),
    ],
    "policy check": [
        ("devbox policy check", "validate the policy in force"),
        ("devbox policy check new-policy.yaml", "validate a file before installing it"),
    ],
    "lab": [
        ("sudo devbox lab install --admins labadmins", "set lab mode up, as root"),
        ("devbox lab status", "installed? sound? who is in the lab group?"),
    ],
    "image": [
        ("devbox image build", "devbox/devbox on this engine, from debian:bookworm-slim"),
        ("devbox image build --base devbox/debian:bookworm", "offline: a base your engine has"),
    ],
    "image build": [
        ("devbox image build", "what the default profile runs, built here"),
        ("devbox image build --base devbox/debian:bookworm", "offline: a base your engine has"),
        ("devbox image build --tag devbox/devbox:try", "another tag, to try it first"),
    ],
    "lab install": [
        ("sudo devbox lab install", "lab group devbox; run it again after an upgrade"),
        ("sudo devbox lab install --group gpuusers --admins labadmins", "your own group names"),
    ],
    "lab uninstall": [
        ("sudo devbox lab uninstall", "lab mode off; the policy and audit log stay"),
        ("sudo devbox lab uninstall --json", "the same, what it removed as JSON"),
    ],
    "lab status": [
        ("devbox lab status", "lab mode, its group, admins and engine"),
        ("devbox lab status --json", "the same as JSON, every weak spot listed"),
    ],
    "render": [
        ("devbox render pytorch-gpu", "the docker run that up would do"),
        ("devbox render ./train.yaml --gpus 1 --format json", "the container spec as JSON"),
        ("devbox render pytorch-gpu --format k8s | kubectl apply -n $USER -f -", "a Pod and its claims"),
    ],
    "profiles": [
        ("devbox profiles", "every profile devbox finds, and where"),
        ("devbox profiles check .devbox/*.yaml", "validate profile files, as CI would"),
    ],
    "profiles check": [
        ("devbox profiles check .devbox/*.yaml", "validate profile files"),
        ("devbox profiles check train.yaml --json", "the result as JSON"),
    ],
    "version": [
        ("devbox version", "devbox, Python and engine versions"),
        ("devbox version --json", "the same as JSON"),
    ],
    "completion": [
        ("source <(devbox completion bash)", "bash, for this shell; add it to ~/.bashrc"),
        ("devbox completion zsh > ~/.zfunc/_devbox", "zsh, with ~/.zfunc in fpath"),
        ("devbox completion fish > ~/.config/fish/completions/devbox.fish", "fish"),
    ],
    "help": [
        ("devbox help", "list the help topics"),
        ("devbox help profiles", "how profiles are written and found"),
        ("devbox help up", "the same as devbox up --help"),
    ],
}


def lines(command: str) -> list[str]:
    """The examples of `command` ("" for devbox itself, "up", "policy show"), a comment over each."""
    out = ["Examples:"]
    for line, what in EXAMPLES[command]:
        out += [f"  # {what}", f"  {line}"]
    return out


def epilog(command: str) -> str:
    """The examples of `command` as the text that ends its --help."""
    return "\n".join(lines(command))
