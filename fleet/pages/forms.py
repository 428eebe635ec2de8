"""The create-environment form. It only renders the fields and their bounds: the page's script
(static/js/owner.js) posts the values as JSON to /api/envs, which validates them for real."""

from django import forms

from ttproject.vocabulary import ENGINES

from .. import conf
from ..validators import ENV_ID


class EnvCreateForm(forms.Form):
    id = forms.CharField(label="Name", validators=[ENV_ID], max_length=128,
                         help_text="A-Z a-z 0-9 . _ - (no leading dot)")
    image = forms.CharField(max_length=255)
    # docker first (not the API's default qemu): it needs no image file, so a first try works on any host
    engine = forms.ChoiceField(choices=[(e, e) for e in ENGINES], initial="docker")
    cpu = forms.IntegerField(min_value=1, max_value=conf.MAX_CPU, initial=1, label="vCPUs")
    mem = forms.IntegerField(min_value=1, max_value=conf.MAX_MEM, initial=256, label="Memory (MiB)")
    disk = forms.IntegerField(min_value=1, max_value=conf.MAX_DISK, initial=1024, label="Disk (MiB)")
    count = forms.IntegerField(min_value=1, max_value=conf.MAX_VMS_PER_ENV, initial=1, label="VMs")
    ports = forms.CharField(required=False, label="Ports", help_text="guest ports, e.g. 22 80 443 (22 is "
                            "added for VM engines)")
    deny_outgoing = forms.BooleanField(required=False, label="Block outgoing traffic")
    isolated_network = forms.BooleanField(required=False, initial=True, label="Own network",
                                          help_text="the VMs reach each other by hostname, apart from other envs "
                                                    "(off: each alone on the engine's default network)")
    ssh_keys = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="SSH public keys",
                               help_text="one per line")
    lifetime = forms.IntegerField(min_value=0, max_value=conf.MAX_LIFETIME // 3600, initial=6,
                                  label="Lifetime (hours)", help_text="0 = never expires")

    def __init__(self, *args, images=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].widget.attrs["list"] = "image-choices"
        self.image_choices = sorted(images)
