import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from posts.models import Post


def home(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"blog": "ok", "posts": Post.objects.count()})


@csrf_exempt
def items(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        post = Post.objects.create(title=json.loads(request.body)["text"])
        return JsonResponse({"id": post.id, "text": post.title}, status=201)
    rows = [{"id": p.id, "text": p.title} for p in Post.objects.order_by("id")]
    return JsonResponse(rows, safe=False)
